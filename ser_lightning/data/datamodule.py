"""The LightningDataModule: corpus folder to batches, with decoded audio and features cached.

prepare_data (rank 0) scans the corpus and builds the caches; setup (every rank) scans again,
splits, and memory-maps the caches. A second run with the same settings decodes no audio and
computes no feature: it only stats the files to check that the cache key still matches.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, default_collate

from ser_lightning.data.audio import AudioSettings, load_waveform
from ser_lightning.data.cache import DEFAULT_LOCK_TIMEOUT_S, ArrayCache, cache_key, file_fingerprint
from ser_lightning.data.corpora import (
    CremaDCorpus,
    FolderCorpus,
    RavdessCorpus,
    SaveeCorpus,
    SerEnCorpus,
    TessCorpus,
    build_corpus,
)
from ser_lightning.data.label_sets import check_label_spec, relabel, resolve_label_names
from ser_lightning.data.quality import SkipPolicy, screen_audio
from ser_lightning.data.sampling import EpochSeededShuffle
from ser_lightning.data.splits import SPLIT_NAMES, check_ratios, make_split, split_indices
from ser_lightning.data.utterances import CorpusScan, relative_paths
from ser_lightning.features.base import FeatureExtractor
from ser_lightning.utils.progress import progress_bar
from ser_lightning.utils.seeding import seeded_global_rngs

log = logging.getLogger(__name__)

# Bump when the bytes a cache holds change for the same inputs (e.g. a decoding fix).
# 2: long files are decoded around their crop only; truncated WAVs are refused.
WAVEFORM_CACHE_VERSION = 2
FEATURE_CACHE_VERSION = 1

CORPORA = {
    "ravdess": RavdessCorpus,
    "crema_d": CremaDCorpus,
    "tess": TessCorpus,
    "savee": SaveeCorpus,
    "ser_en": SerEnCorpus,
    "folder": FolderCorpus,
}


class CachedUtterances(Dataset):
    """Rows of a memory-mapped cache array, with their labels.

    `kind` names what the rows are ("features" or "waveform"); it is the batch key the
    LightningModule reads. `transform` (waveforms only) runs in the DataLoader workers. Items
    are addressed by position, or by `(position, epoch seed)` from
    `EpochSeededShuffle(item_seeds=True)`: the transform then runs under generators seeded
    from (epoch seed, row), so that augmentation does not depend on workers or on resuming.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray, labels: np.ndarray, kind: str, transform=None):
        self.array = array
        self.rows = rows
        self.labels = labels
        self.kind = kind
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def _transformed(self, item: np.ndarray, row: int, epoch_seed: int | None) -> np.ndarray:
        if epoch_seed is None:
            return self.transform(item)
        with seeded_global_rngs(epoch_seed, row):
            return self.transform(item)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        position, epoch_seed = key if isinstance(key, tuple) else (key, None)
        row = int(self.rows[position])
        item = np.array(self.array[row], dtype=np.float32)  # copy out of the read-only map
        if self.transform is not None:
            item = self._transformed(item, row, epoch_seed)
        return {self.kind: torch.from_numpy(item), "label": int(self.labels[row]), "row": row}

    def __getitems__(self, keys: list[int] | list[tuple[int, int]]) -> dict:
        """A whole batch, already collated: one gathered read of the map instead of a copy per
        item and a second one to stack them (the DataLoader fetches batches through this)."""
        if keys and isinstance(keys[0], tuple):
            positions, seeds = [k[0] for k in keys], [k[1] for k in keys]
        else:
            positions, seeds = keys, [None] * len(keys)
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        block = np.array(self.array[rows], dtype=np.float32)  # rows in the sampler's order
        if self.transform is not None:
            block = np.stack(
                [
                    self._transformed(item, int(row), seed)
                    for item, row, seed in zip(block, rows, seeds, strict=True)
                ]
            )
        return {
            self.kind: torch.from_numpy(block),
            "label": torch.from_numpy(self.labels[rows].astype(np.int64)),
            "row": torch.from_numpy(rows.astype(np.int64)),
        }


def collate_batch(data: dict | list[dict]) -> dict:
    """DataLoader collate_fn: CachedUtterances hands over collated batches; item lists from other
    datasets (a ConcatDataset with offline copies) are collated as usual."""
    return data if isinstance(data, dict) else default_collate(data)


@dataclass
class CacheKeys:
    waveforms: str
    features: str


class SERDataModule(pl.LightningDataModule):
    """Speech-emotion data: one corpus, one split, cached waveforms and features."""

    def __init__(
        self,
        features: FeatureExtractor,
        root: str,
        corpus: str = "ravdess",
        vocal_channels: tuple[str, ...] | list[str] = ("speech",),
        corpus_options: dict | None = None,
        labels: str | list[str] = "all",
        demo: dict | None = None,
        split: str = "actor",
        split_ratios: tuple[float, float, float] | list[float] = (0.7, 0.15, 0.15),
        split_seed: int = 42,
        fold: int = 0,
        num_folds: int = 6,
        test_corpus: str | None = None,
        sample_rate: int = 16000,
        duration: float = 3.0,
        offset: float = 0.0,
        crop: str = "center",
        peak_normalize: bool = True,
        cache_dir: str = ".cache/ser_lightning",
        cache_lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool | str = "auto",
        train_input: str = "features",
        decode_workers: int | None = None,
        on_error: str = "skip",
        max_skip_fraction: float = 0.05,
        shuffle_seed: int = 0,
    ):
        super().__init__()
        if corpus not in CORPORA:
            raise ValueError(f"data.corpus={corpus!r} is not known; choose from {sorted(CORPORA)}")
        if train_input not in ("features", "waveform"):
            raise ValueError(f"data.train_input={train_input!r} must be 'features' or 'waveform'")
        if train_input == "waveform" and not features.runs_on_device:
            raise ValueError(
                f"data.train_input=waveform needs features computed per batch, but {type(features).__name__} "
                "is precomputed on CPU; use data.train_input=features"
            )
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size} must be at least 1")
        self.features = features
        self.root = str(Path(root).expanduser())
        self.corpus = build_corpus(CORPORA[corpus], self.root, vocal_channels, corpus_options)
        self.label_spec = check_label_spec(labels)
        self.demo = dict(demo) if demo else None
        self.splitter = make_split(split, split_ratios, split_seed, fold, num_folds, test_corpus)
        check_ratios(split_ratios)  # here, not first at setup: a config mistake fails before any work
        self.skip_policy = SkipPolicy(on_error, max_skip_fraction)
        self.shuffle_seed = shuffle_seed
        self.audio = AudioSettings(sample_rate, duration, offset, crop, peak_normalize)
        if getattr(features, "sample_rate", sample_rate) != sample_rate:
            raise ValueError(
                f"features.sample_rate={features.sample_rate} differs from data.sample_rate={sample_rate}; "
                "set features.sample_rate=${data.sample_rate}"
            )
        self.cache = ArrayCache(cache_dir, cache_lock_timeout)
        self.batch_size = batch_size
        self.num_workers = num_workers
        if pin_memory not in (True, False, "auto"):
            raise ValueError(
                f"data.pin_memory={pin_memory!r} must be true, false or auto (pin when training on a CUDA GPU)"
            )
        self.pin_memory = pin_memory
        self.train_input = train_input
        self.decode_workers = decode_workers
        self.waveform_transform = None  # set by augmentation (train split only)
        # set by augmentation: builds extra training rows of augmented feature copies in setup
        self.offline_augmentation = None
        self.train_copies: Dataset | None = None
        self._label_names: tuple[str, ...] | None = None

        self.scan: CorpusScan | None = None
        self.assignment: pd.Series | None = None
        self.indices: dict[str, np.ndarray] = {}
        self.waveforms: np.ndarray | None = None
        self.feature_array: np.ndarray | None = None
        self.keys: CacheKeys | None = None
        self.cache_events: list[str] = []  # what prepare/setup did, for the run summary and tests

    # ---------------------------------------------------------------- shapes and info
    @property
    def num_samples(self) -> int:
        return self.audio.num_samples

    @property
    def label_names(self) -> tuple[str, ...]:
        """The emotions this run classifies, in EMOTIONS order (data.labels; see data/label_sets.py).

        data.labels=corpus scans the corpus here, so that the model can be sized before setup.
        """
        if self._label_names is None:
            present = self._raw_scan().table["emotion"] if self.label_spec == "corpus" else ()
            self._label_names = resolve_label_names(self.label_spec, present)
        return self._label_names

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def table(self) -> pd.DataFrame:
        if self.scan is None:
            raise RuntimeError("the data module is not set up yet; call prepare_data() and setup() first")
        return self.scan.table

    # ---------------------------------------------------------------- corpus and caches
    def _raw_scan(self) -> CorpusScan:
        if self.demo is not None:
            from ser_lightning.data.demo import DemoCorpusSpec, ensure_demo_corpus

            ensure_demo_corpus(self.root, DemoCorpusSpec(**self.demo))
        return self.corpus.scan()

    def _scan_corpus(self) -> CorpusScan:
        """The corpus's files of this run's emotions, `label` re-indexed to label_names."""
        scan = self._raw_scan()
        scan.table, left_out = relabel(scan.table, self.label_names)
        scan.excluded_by_filter += left_out
        if scan.table.empty:
            raise ValueError(
                f"no file of the corpus at {self.root} has one of the emotions data.labels asks for "
                f"({list(self.label_names)})"
            )
        scan = screen_audio(scan, self.cache, self.decode_workers)  # undecodable files leave the table here
        if scan.rejected or scan.excluded_by_filter:
            log.warning("corpus %s: %s", self.root, scan.summary())
        self.skip_policy.enforce(scan)
        return scan

    def _cache_keys(self, table: pd.DataFrame) -> CacheKeys:
        files = file_fingerprint(table["path"])
        waveforms = cache_key(files=files, audio=self.audio.to_dict(), version=WAVEFORM_CACHE_VERSION)
        features = cache_key(
            waveforms=waveforms, features=self.features.cache_params(), version=FEATURE_CACHE_VERSION
        )
        return CacheKeys(waveforms, features)

    def _build_waveforms(self, table: pd.DataFrame, key: str) -> None:
        paths = table["path"].tolist()

        def fill(out: np.ndarray) -> None:
            workers = self.decode_workers or min(8, max(1, (len(paths) // 64) or 1))
            with progress_bar() as progress, ThreadPoolExecutor(max_workers=workers) as pool:
                task = progress.add_task("decoding audio", total=len(paths))
                for i, wave in enumerate(pool.map(lambda p: load_waveform(p, self.audio), paths)):
                    out[i] = wave
                    progress.advance(task)

        start = time.perf_counter()
        _, built = self.cache.build(
            "waveforms",
            key,
            (len(paths), self.num_samples),
            "float32",
            fill,
            {"audio": self.audio.to_dict(), "num_files": len(paths), "corpus_root": self.root},
        )
        if built:
            self.cache_events.append("built waveforms")
            log.info("cached %d waveforms in %.1f s", len(paths), time.perf_counter() - start)
        else:
            self.cache_events.append("reused waveforms")

    def _build_features(self, keys: CacheKeys, n: int) -> None:
        shape = (n, *self.features.output_shape(self.num_samples))
        waveforms = self.cache.load("waveforms", keys.waveforms)

        def fill(out: np.ndarray) -> None:
            # The extractor decides how (in-process torch, or a process pool for librosa).
            with progress_bar() as progress:
                task = progress.add_task("computing features", total=n)
                self.features.precompute(waveforms, out, advance=lambda k: progress.advance(task, k))

        started = time.perf_counter()
        _, built = self.cache.build(
            "features", keys.features, shape, "float32", fill, {"features": self.features.cache_params()}
        )
        if built:
            self.cache_events.append("built features")
            log.info("cached features %s in %.1f s", shape, time.perf_counter() - started)
        else:
            self.cache_events.append("reused features")

    def _ensure_caches(self, table: pd.DataFrame) -> CacheKeys:
        keys = self._cache_keys(table)
        self._build_waveforms(table, keys.waveforms)
        self._build_features(keys, len(table))
        return keys

    def prepare_data(self) -> None:
        # The trainer calls this again inside fit(); once per process is enough.
        if self.keys is None:
            self.keys = self._ensure_caches(self._scan_corpus().table)

    def setup(self, stage: str | None = None) -> None:
        if self.scan is not None:
            return
        self.scan = self._scan_corpus()
        table = self.scan.table
        # Building here too is a no-op when prepare_data already did it; it makes setup safe to
        # call alone (tests, notebooks) and the file lock keeps concurrent ranks from racing.
        keys = self._cache_keys(table)
        if keys != self.keys:
            self.keys = self._ensure_caches(table)
        self.waveforms = self.cache.load("waveforms", self.keys.waveforms)
        self.feature_array = self.cache.load("features", self.keys.features)
        self.assignment = self.splitter(table)
        self.indices = split_indices(self.assignment)
        needed = SPLIT_NAMES if getattr(self.splitter, "needs_training_data", True) else ("test",)
        empty = [name for name in needed if len(self.indices[name]) == 0]
        if empty:
            raise ValueError(
                f"split {self.splitter.name!r} left {empty} empty; the corpus at {self.root} is too small"
            )
        counts = {name: len(self.indices[name]) for name in SPLIT_NAMES}
        log.info("split=%s: %s", self.splitter.name, counts)
        if self.offline_augmentation is not None:
            self.train_copies = self.offline_augmentation.build(self)

    # ---------------------------------------------------------------- datasets
    def dataset(self, split: str) -> CachedUtterances:
        labels = self.table["label"].to_numpy()
        if split == "train" and self.train_input == "waveform":
            return CachedUtterances(
                self.waveforms, self.indices[split], labels, "waveform", self.waveform_transform
            )
        clean = CachedUtterances(self.feature_array, self.indices[split], labels, "features")
        if split == "train" and self.train_copies is not None:
            return ConcatDataset([clean, self.train_copies])
        return clean

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.dataset(split)
        # An order drawn from (seed, epoch) only, so that a resumed run replays it exactly; clips
        # augmented in the workers get their own seeds from the same (seed, epoch).
        augmented = isinstance(dataset, CachedUtterances) and dataset.transform is not None
        sampler = (
            EpochSeededShuffle(len(dataset), self.shuffle_seed, self._fit_epoch, item_seeds=augmented)
            if shuffle
            else None
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self._pin_memory(),
            persistent_workers=self.num_workers > 0,
            drop_last=False,
            collate_fn=collate_batch,
        )

    def _pin_memory(self) -> bool:
        """Pinned batches copy to a CUDA device asynchronously; without one they are only an extra
        copy (and torch warns on every loader). `auto` pins when the trainer runs on CUDA."""
        if not torch.cuda.is_available() or self.pin_memory is False:
            return False
        if self.pin_memory == "auto":
            strategy = getattr(self.trainer, "strategy", None)
            device = getattr(strategy, "root_device", None)
            return device is not None and device.type == "cuda"
        return True

    def _fit_epoch(self) -> int | None:
        """The epoch a train iteration belongs to, right also while a resumed fit starts up."""
        return None if self.trainer is None else self.trainer.fit_loop.epoch_progress.current.processed

    def train_dataloader(self) -> DataLoader:
        if not getattr(self.splitter, "needs_training_data", True):
            raise ValueError(
                f"data.split={self.splitter.name} puts every file in the test set: it is for evaluating a "
                "trained model, not for training; choose another data.split to train"
            )
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ---------------------------------------------------------------- statistics and records
    def train_features(self) -> np.ndarray:
        """Cached features of the train split (for dataset normalisation statistics)."""
        return self.feature_array[np.sort(self.indices["train"])]

    def class_weights(self) -> torch.Tensor:
        """sklearn-style "balanced" weights from the train split: n / (classes * count)."""
        labels = self.table["label"].to_numpy()[self.indices["train"]]
        counts = np.bincount(labels, minlength=self.num_classes).astype(np.float64)
        weights = np.where(counts > 0, len(labels) / (self.num_classes * np.maximum(counts, 1)), 0.0)
        return torch.tensor(weights, dtype=torch.float32)

    def protocol(self) -> dict:
        """How this run's data was chosen and split, for summaries and loggers (after setup)."""
        return {
            "corpus": self.corpus.name,
            "root": self.root,
            "labels": list(self.label_names),
            **self.splitter.describe(self.table),
            "split_sizes": {name: int(len(idx)) for name, idx in self.indices.items()},
        }

    def split_table(self) -> pd.DataFrame:
        """The utterance table with its split column, paths relative to the corpus root.

        `label` is the class index of this run (position in label_names), as the model sees it."""
        table = self.table.copy()
        table["path"] = relative_paths(table, self.root)
        table.insert(0, "split", self.assignment.to_numpy())
        return table

    def write_records(self, directory: str | Path) -> dict[str, Path]:
        """Write the split used (and any rejected files) next to the run."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written = {"split": directory / "split.csv"}
        self.split_table().to_csv(written["split"], index=False)
        if self.scan.rejected:
            written["rejected"] = directory / "rejected_files.csv"
            self.scan.rejected_frame().to_csv(written["rejected"], index=False)
        return written
