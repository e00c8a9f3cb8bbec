"""The LightningDataModule: a manifest, a feature store and loader settings, composed.

prepare_data (rank 0) scans the corpus and builds the caches; setup (every rank) prepares the
manifest (scan, screen, split), opens the caches and builds the offline augmented copies when
asked to. A second run with the same settings decodes no audio and computes no feature: it only
stats the files to check that the cache key still matches.

The data config's keys (`data.split`, `data.batch_size`, ...) are flat, as users override them;
`build_data_module` groups them into the nodes the data module is made of.
"""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.augment.waveform import WaveformAugmentation
from ser_lightning.data.cache import DEFAULT_LOCK_TIMEOUT_S
from ser_lightning.data.device_batches import DeviceBatches, DevicePlacement
from ser_lightning.data.dimension_targets import DimensionBatches
from ser_lightning.data.feature_store import CacheKeys, FeatureStore, StoredArrays
from ser_lightning.data.loading import CachedUtterances, LoaderSettings, check_train_input, collate_batch
from ser_lightning.data.manifest import CorpusSource, Manifest, prepare_manifest
from ser_lightning.data.offline_copies import OfflineCopies
from ser_lightning.data.splits import Splitter, check_ratios, make_split
from ser_lightning.data.variable_length import clip_caches, shuffle_sampler
from ser_lightning.data.vote_targets import VoteBatches, with_targets
from ser_lightning.features.base import FeatureExtractor
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)


class SERDataModule(VoteBatches, DimensionBatches, pl.LightningDataModule):
    """Speech-emotion data: one corpus source, one split, cached waveforms and features.

    - `source`: which files and emotions (CorpusSource);
    - `split`: the split protocol (a Splitter);
    - `store`: the caches, with the feature extractor and audio settings (FeatureStore);
    - `loader`: batch size, workers, pinning, shuffle seed (LoaderSettings);
    - `train_input`: what the train split's batches carry: cached `features`, or `waveform`s
      whose features the LightningModule computes per batch (on-the-fly augmentation);
    - `waveform_augmentation`: transforms applied to train clips in the DataLoader workers
      (needs train_input=waveform); `offline_copies`: augmented copies of the train clips,
      cached once and appended to the train split.

    Batches carry `dimensions` where the corpus has ratings, `soft_targets` with data.targets=soft.
    """

    def __init__(
        self,
        source: CorpusSource,
        split: Splitter,
        store: FeatureStore,
        loader: LoaderSettings,
        train_input: str = "features",
        waveform_augmentation: WaveformAugmentation | None = None,
        offline_copies: OfflineCopies | None = None,
        max_duration_s: float | None = None,  # whole clips (data.duration=null): the longest training clip
    ):
        super().__init__()
        check_train_input(train_input, store.features, waveform_augmentation, offline_copies)
        # the caches clips are served from: fixed-length rows, or whole clips (ragged, by length)
        self.caches = clip_caches(
            store, max_duration_s, train_input, waveform_augmentation, offline_copies, loader
        )
        self.source = source
        self.splitter = split
        self.store = store
        self.loader = loader
        self.train_input = train_input
        self.waveform_augmentation = waveform_augmentation
        self.offline_copies = offline_copies
        self.num_workers = loader.workers(augmenting_in_workers=waveform_augmentation is not None)
        if waveform_augmentation is not None:
            log.info(
                "augmentation: waveform transforms %s on the train split, in %d DataLoader workers",
                waveform_augmentation.names,
                self.num_workers,
            )
        if offline_copies is not None:
            log.info(
                "augmentation: %d offline copies per training clip with %s",
                offline_copies.copies,
                offline_copies.augmentation.names,
            )
        self.keys: CacheKeys | None = None  # set by prepare_data
        self.manifest: Manifest | None = None  # set by setup
        self.arrays: StoredArrays | None = None
        self.train_copies: Dataset | None = None
        self.placement = DevicePlacement(loader.placement, loader.device_memory_share)
        self._resume_point: tuple[int, int] | None = None

    # ---------------------------------------------------------------- what it serves
    @property
    def features(self) -> FeatureExtractor:
        """The feature extractor the caches were computed with."""
        return self.store.features

    @property
    def audio(self) -> AudioSettings:
        """The audio settings every clip is decoded with."""
        return self.store.audio

    @property
    def label_names(self) -> tuple[str, ...]:
        """The emotion names, in label-index order."""
        return self.source.label_names

    @property
    def num_classes(self) -> int:
        """The number of emotions the model tells apart."""
        return len(self.label_names)

    @property
    def cache_events(self) -> list[str]:
        """What prepare/setup did to the caches ("built waveforms", ...), for the run summary."""
        return self.store.events

    def _ready(self) -> Manifest:
        if self.manifest is None:
            raise RuntimeError("the data module is not set up yet; call prepare_data() and setup() first")
        return self.manifest

    # ---------------------------------------------------------------- lifecycle
    def prepare_data(self) -> None:
        """Scan the corpus and build the waveform and feature caches (once per process)."""
        # The trainer calls this again inside fit(); once per process is enough.
        if self.keys is None:
            table = self.source.scan(self.store.cache, self.store.decode_workers).table
            self.keys = self.caches.ensure(table, self.source.root)

    def setup(self, stage: str | None = None) -> None:
        """Prepare the manifest (scan, screen, split), open the caches and build the offline copies; once."""
        if self.manifest is not None:
            return
        manifest = prepare_manifest(self.source, self.splitter, self.store.cache, self.store.decode_workers)
        # Building here too is a no-op when prepare_data already did it; it makes setup safe to
        # call alone (tests, notebooks) and the file lock keeps concurrent ranks from racing.
        keys = self.caches.keys(manifest.table)
        if keys != self.keys:
            self.keys = self.caches.ensure(manifest.table, self.source.root)
        self.arrays = self.caches.load(self.keys)
        if self.waveform_augmentation is not None:
            # before the DataLoader workers start: they must not compile librosa's numba functions at once
            self.waveform_augmentation.prepare_numba()
        if self.offline_copies is not None:
            self.train_copies = self.offline_copies.build(
                self.store, self.arrays, manifest.indices["train"], manifest.labels
            )
        self.manifest = manifest

    # ---------------------------------------------------------------- datasets and loaders
    def dataset(self, split: str) -> Dataset:
        """Make the dataset of one split of the set-up data module.

        Args:
            split: "train", "val" or "test".

        Returns:
            The split's cached features; for the train split, cached waveforms (with the on-the-fly
            augmentation) when `train_input="waveform"`, or the features followed by the offline
            copies when there are any.
        """
        manifest = self._ready()
        rows, labels = manifest.indices[split], manifest.labels
        if self.caches is not self.store:  # whole clips, padded per batch
            return self.caches.dataset(self.arrays, split, rows, labels)
        if split == "train" and self.train_input == "waveform":
            return CachedUtterances(
                self.arrays.waveforms, rows, labels, "waveform", self.waveform_augmentation
            )
        clean = CachedUtterances(self.arrays.features, rows, labels, "features")
        if split == "train" and self.train_copies is not None:
            return ConcatDataset([clean, self.train_copies])
        return clean

    def _loader(self, split: str, shuffle: bool) -> DataLoader | DeviceBatches:
        dataset = self.dataset(split)
        trainer = self.trainer
        # each rank's share dealt as Lightning deals it (unless use_distributed_sampler=False)
        distributed = (
            trainer is not None
            and trainer.world_size > 1
            and trainer._accelerator_connector.use_distributed_sampler
        )
        num_replicas, rank = (trainer.world_size, trainer.global_rank) if distributed else (1, 0)
        sampler = None
        if shuffle:
            # An order drawn from (seed, epoch) only, so that a resumed run replays it exactly; clips
            # augmented in the workers get their own seeds from the same (seed, epoch).
            augmented = isinstance(dataset, CachedUtterances) and dataset.transform is not None
            sampler = shuffle_sampler(
                self.caches, dataset, self.loader, self._fit_epoch, augmented, num_replicas, rank
            )
            if self._resume_point is not None:
                epoch, batches_done = self._resume_point
                sampler.resume_within(epoch, batches_done * self.loader.batch_size)
                self._resume_point = None
        strategy = getattr(trainer, "strategy", None) if trainer is not None else None
        fixed = isinstance(dataset, CachedUtterances) and dataset.transform is None  # the same every epoch
        device = self.placement.device_for(
            split, fixed, getattr(strategy, "root_device", None), self._bytes_of_all_rows
        )
        if device is not None:
            return DeviceBatches(
                *self.placement.rows_on(split, device, lambda: self._rows_of(split)),
                batch_size=self.loader.batch_size,
                kind=dataset.kind,
                order=sampler,
                num_replicas=num_replicas,
                rank=rank,
            )
        return DataLoader(
            dataset,
            batch_size=self.loader.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.loader.pin(getattr(strategy, "root_device", None)),
            persistent_workers=self.num_workers > 0,
            drop_last=False,
            collate_fn=collate_batch,
        )

    def _rows_of(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Give a split's cached rows, the table's labels and the split's row numbers.

        Returns:
            The split's feature array, the labels of every table row, and the split's row numbers.
        """
        return self.dataset(split).array, self._ready().labels, self._ready().indices[split]

    def _bytes_of_all_rows(self) -> int:
        """Count the bytes of the train, val and test rows as float32 (for `data.placement=auto`).

        Returns:
            The size of all three splits' cached rows.
        """
        manifest = self._ready()
        row_bytes = 4 * int(np.prod(self.arrays.features.shape[1:]))
        return row_bytes * sum(len(manifest.indices[s]) for s in ("train", "val", "test"))

    def _fit_epoch(self) -> int | None:
        """Tell which epoch a train iteration belongs to, right also while a resumed fit starts up.

        Returns:
            The fit loop's count of processed epochs, or None without a trainer.
        """
        return None if self.trainer is None else self.trainer.fit_loop.epoch_progress.current.processed

    def resume_within_epoch(self, epoch: int, batches_done: int) -> None:
        """Make the next train loader start `epoch` after the batches a stopped run trained already.

        Called by `RequeueOnSignal` when a run resumes from the checkpoint it wrote inside an
        epoch: that epoch's order is drawn as before, without its first `batches_done` batches.

        Args:
            epoch: The epoch the run stopped in.
            batches_done: The batches of that epoch it trained on (per rank).
        """
        self._resume_point = (epoch, batches_done)

    def train_dataloader(self) -> DataLoader:
        """Serve the train split, shuffled by (seed, epoch).

        Returns:
            A DataLoader, or DeviceBatches when the split is held on the device (`data.placement`).

        Raises:
            InvalidSetting: when the split protocol has no training data (e.g. `test_only`).
        """
        if not self.splitter.needs_training_data:
            raise InvalidSetting(
                f"data.split={self.splitter.name} puts every file in the test set: it is for evaluating a "
                "trained model, not for training; choose another data.split to train"
            )
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Serve the validation split in table order.

        Returns:
            A DataLoader, or DeviceBatches when the split is held on the device.
        """
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Serve the test split in table order.

        Returns:
            A DataLoader, or DeviceBatches when the split is held on the device.
        """
        return self._loader("test", shuffle=False)

    # ---------------------------------------------------------------- what the model asks for
    def train_features(self) -> np.ndarray:
        """Read the cached features of the train split (for dataset normalisation statistics).

        Returns:
            The train rows' features, in table order.
        """
        return self.arrays.features[np.sort(self._ready().indices["train"])]

    def class_weights(self) -> torch.Tensor:
        """Weigh the classes for the loss, sklearn's "balanced" way, from the train split.

        Returns:
            n / (classes * count) per class; 0 for a class the train split lacks.
        """
        return self._ready().class_weights()


def build_data_module(
    features: FeatureExtractor,
    root: str,
    corpus: str = "ravdess",
    vocal_channels: tuple[str, ...] | list[str] = ("speech",),
    corpus_options: dict | None = None,
    emobox: dict | None = None,  # data=emobox: meta_dir, dataset; they reach the parser as corpus_options
    labels: str | list[str] = "all",
    label_map: dict[str, str] | None = None,
    demo: dict | None = None,
    split: str = "actor",
    split_ratios: tuple[float, float, float] | list[float] = (0.7, 0.15, 0.15),
    split_seed: int = 42,
    fold: int = 0,
    num_folds: int = 6,
    test_corpus: str | None = None,
    folds: str | list | None = None,
    test_partition: str | None = None,
    sample_rate: int = 16000,
    duration: float | None = 3.0,
    offset: float = 0.0,
    crop: str = "center",
    peak_normalize: bool = True,
    cache_dir: str = ".cache/ser_lightning",
    cache_lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    batch_size: int = 32,
    num_workers: int | str = "auto",
    pin_memory: bool | str = "auto",
    train_input: str = "features",
    decode_workers: int | None = None,
    on_error: str = "skip",
    max_skip_fraction: float = 0.05,
    shuffle_seed: int = 0,
    placement: str = "host",
    device_memory_share: float = 0.5,
    waveform_augmentation: WaveformAugmentation | None = None,
    offline_copies: OfflineCopies | None = None,
    max_duration_s: float | None = None,
    targets: str = "hard",
) -> SERDataModule:
    """A data module from the data config's flat keys (conf/data/_base.yaml documents each).

    On-the-fly waveform augmentation trains on waveforms (`train_input=waveform`): their
    features are recomputed from the augmented audio on the device, which CPU-only features
    cannot do (they take offline copies instead).

    Returns:
        The data module, not yet prepared or set up.

    Raises:
        InvalidSetting: when on-the-fly waveform augmentation is asked of features computed on
            CPU, or (from the parts it builds) a split, corpus, loader or cache setting is invalid.
    """
    if waveform_augmentation is not None and not features.runs_on_device:
        raise InvalidSetting(
            f"augmentation.waveform on the fly needs features computed per batch, but {type(features).__name__} "
            "is computed once on CPU and cached; set augmentation.offline_copies=K (e.g. 2) to cache K "
            "augmented copies of every training clip instead"
        )
    check_ratios(split_ratios)  # here, not first at setup: a config mistake fails before any work
    module = SERDataModule(
        source=CorpusSource(
            corpus, root, vocal_channels, corpus_options, labels, demo, on_error, max_skip_fraction, label_map
        ),
        split=make_split(
            split, split_ratios, split_seed, fold, num_folds, test_corpus, folds, test_partition
        ),
        store=FeatureStore(
            features,
            AudioSettings(sample_rate, duration, offset, crop, peak_normalize),
            cache_dir,
            cache_lock_timeout,
            decode_workers,
        ),
        loader=LoaderSettings(
            batch_size, num_workers, pin_memory, shuffle_seed, placement, device_memory_share
        ),
        train_input="waveform" if waveform_augmentation is not None else train_input,
        waveform_augmentation=waveform_augmentation,
        offline_copies=offline_copies,
        max_duration_s=max_duration_s,
    )
    return with_targets(module, targets)  # VoteBatches: soft adds each batch's vote distributions
