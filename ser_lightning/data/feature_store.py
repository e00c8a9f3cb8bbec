"""The feature store: a run's content-addressed caches of decoded audio and of features.

From an utterance table it builds (once) the waveform cache, every clip decoded, mixed to
mono, resampled and cropped as the audio settings say, and the feature cache computed from
it, then memory-maps both. The keys are computed from the files' fingerprints (path, size,
mtime), the audio settings and the extractor's parameters, so a second run with the same
settings decodes no audio and computes no feature. Offline augmented copies are built into
the same cache (`ser_lightning.data.offline_copies`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.data.audio import load_waveform
from ser_lightning.data.cache import DEFAULT_LOCK_TIMEOUT_S, ArrayCache, cache_key, file_fingerprint
from ser_lightning.features.base import FeatureExtractor
from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.progress import progress_bar

log = logging.getLogger(__name__)

# Bump when the bytes a cache holds change for the same inputs (e.g. a decoding fix).
# 2: long files are decoded around their crop only; truncated WAVs are refused.
WAVEFORM_CACHE_VERSION = 2
FEATURE_CACHE_VERSION = 1


@dataclass(frozen=True)
class CacheKeys:
    """The cache keys of one table's waveform and feature entries."""

    waveforms: str
    features: str


@dataclass(frozen=True)
class StoredArrays:
    """The memory-mapped caches of one table: row i of each is the table's row i."""

    keys: CacheKeys
    waveforms: np.ndarray  # (N, samples)
    features: np.ndarray  # (N, *extractor.output_shape(samples))


class FeatureStore:
    """Builds and opens the caches of decoded waveforms and features for an utterance table.

    `events` lists what it did ("built waveforms", "reused features", ...) for the run summary.
    """

    def __init__(
        self,
        features: FeatureExtractor,
        audio: AudioSettings,
        cache_dir: str,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        decode_workers: int | None = None,
    ):
        if getattr(features, "sample_rate", audio.sample_rate) != audio.sample_rate:
            raise InvalidSetting(
                f"features.sample_rate={features.sample_rate} differs from data.sample_rate={audio.sample_rate}; "
                "set features.sample_rate=${data.sample_rate}"
            )
        self.features = features
        self.audio = audio
        self.cache = ArrayCache(cache_dir, lock_timeout)
        self.decode_workers = decode_workers
        self.events: list[str] = []

    def keys(self, table: pd.DataFrame) -> CacheKeys:
        """Compute the cache keys of a table's entries without building anything.

        The waveform key hashes the files (path, size, mtime), the audio settings and the cache
        version; the feature key hashes the waveform key and the extractor's parameters.

        Args:
            table: the utterance table (its `path` column, in order).

        Returns:
            The waveform and feature keys.
        """
        files = file_fingerprint(table["path"])
        waveforms = cache_key(files=files, audio=self.audio.to_dict(), version=WAVEFORM_CACHE_VERSION)
        features = cache_key(
            waveforms=waveforms, features=self.features.cache_params(), version=FEATURE_CACHE_VERSION
        )
        return CacheKeys(waveforms, features)

    def build(
        self,
        kind: str,
        key: str,
        shape: tuple[int, ...],
        fill: Callable[[np.ndarray], None],
        meta: dict,
        what: str,
        dtype: str = "float32",
    ) -> None:
        """Build one entry of `dtype` unless it exists.

        Another process may be building it: the cache's lock waits for it. Records "built <what>"
        or "reused <what>" in `events`.

        Args:
            kind: the entry's kind.
            key: the entry's key.
            shape: the array's shape.
            fill: fills the array.
            meta: what to record in the entry's metadata.
            what: the entry in words, for `events` and the log.
            dtype: the array's dtype.
        """
        started = time.perf_counter()
        _, built = self.cache.build(kind, key, shape, dtype, fill, meta)
        self.events.append(f"{'built' if built else 'reused'} {what}")
        if built:
            log.info("cached %s %s in %.1f s", what, shape, time.perf_counter() - started)

    def ensure(self, table: pd.DataFrame, corpus_root: str) -> CacheKeys:
        """Build whatever of the table's caches is missing.

        Args:
            table: the utterance table.
            corpus_root: the corpus folder, recorded in the waveform entry's metadata for people
                reading it.

        Returns:
            The keys of the table's entries.
        """
        keys = self.keys(table)
        paths = table["path"].tolist()

        def decode(out: np.ndarray) -> None:
            workers = self.decode_workers or min(8, max(1, (len(paths) // 64) or 1))
            with progress_bar() as progress, ThreadPoolExecutor(max_workers=workers) as pool:
                task = progress.add_task("decoding audio", total=len(paths))
                for i, wave in enumerate(pool.map(lambda p: load_waveform(p, self.audio), paths)):
                    out[i] = wave
                    progress.advance(task)

        meta = {"audio": self.audio.to_dict(), "num_files": len(paths), "corpus_root": corpus_root}
        self.build(
            "waveforms", keys.waveforms, (len(paths), self.audio.num_samples), decode, meta, "waveforms"
        )
        waveforms = self.cache.load("waveforms", keys.waveforms)

        def compute(out: np.ndarray) -> None:
            # The extractor decides how (in-process torch, or a process pool for librosa).
            with progress_bar() as progress:
                task = progress.add_task("computing features", total=len(paths))
                self.features.precompute(waveforms, out, advance=lambda k: progress.advance(task, k))

        if self.features.view_of_waveforms(waveforms) is not None:
            self.events.append("features are the cached waveforms")
            return keys
        shape = (len(paths), *self.features.output_shape(self.audio.num_samples))
        meta = {"features": self.features.cache_params()}
        self.build("features", keys.features, shape, compute, meta, "features", self.features.cache_dtype)
        return keys

    def load(self, keys: CacheKeys) -> StoredArrays:
        """Open built caches, memory-mapped read-only.

        Args:
            keys: the entries' keys (`ensure`).

        Returns:
            The waveforms and the features (a view of the waveforms when the extractor reads them
            as they are).
        """
        waveforms = self.cache.load("waveforms", keys.waveforms)
        features = self.features.view_of_waveforms(waveforms)
        if features is None:
            features = self.cache.load("features", keys.features)
        return StoredArrays(keys, waveforms, features)
