"""Whole-length caches of a table: every clip decoded at its own length, its features at theirs.

The fixed-length store (`ser_lightning.data.feature_store`) crops or pads every clip to
`data.duration`. This store keeps each clip whole (after `offset` seconds, peak-normalised as the
audio settings say) in ragged cache entries (`ser_lightning.data.ragged`): one flat float32 array
of all samples plus their lengths, and one of all feature frames, `(sum(frames), C, F)`, plus
theirs. Both stay memory-mapped; a batch copies only its own rows. Lengths are read from the
files' headers first (a header read per file, no decoding), so the entry's size is known before
a single clip is decoded, and every clip is decoded once.

Keys hash what the fixed-length keys hash (files, audio settings, the extractor's parameters)
under kinds of their own (`waveforms-whole`, `features-whole`), so the two stores never share
an entry.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ser_lightning.audio_settings import AudioSettings, peak_normalize
from ser_lightning.data.bucketing import LengthBucketedShuffle
from ser_lightning.data.cache import cache_key, file_fingerprint
from ser_lightning.data.feature_store import FeatureStore
from ser_lightning.data.loading import LoaderSettings
from ser_lightning.data.ragged import RaggedArray, RaggedUtterances, build_ragged, lengths_kind, load_ragged
from ser_lightning.data.sampling import EpochSeededShuffle
from ser_lightning.decoding import decode_frames, probe_audio
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

# 2: peak normalisation over the whole file, before the offset (as fixed-length clips and predict)
WHOLE_CACHE_VERSION = 2
WAVEFORM_KIND = "waveforms-whole"
FEATURE_KIND = "features-whole"


def whole_length(path: str, settings: AudioSettings) -> int:
    """Count the samples a file's whole clip has, from its header.

    Args:
        path: The audio file.
        settings: The sample rate and offset.

    Returns:
        The samples at `settings.sample_rate` after `settings.offset` seconds (at least 1).
    """
    info = probe_audio(path)
    samples = int(round(info.frames * settings.sample_rate / info.samplerate))
    return max(1, samples - int(round(settings.offset * settings.sample_rate)))


def load_whole(path: str, settings: AudioSettings, length: int) -> np.ndarray:
    """Decode a file whole: mono, resampled, after `offset`, peak-normalised if asked.

    Args:
        path: The audio file.
        settings: The sample rate, offset and peak normalisation.
        length: The samples its header promised (`whole_length`): the result is cut or
            zero-padded to it, so that a resampler's last sample cannot move a row.

    Returns:
        `length` float32 samples.
    """
    samples = decode_frames(path, settings.sample_rate)
    if settings.peak_normalize:  # over the whole file, before the offset, as fixed-length clips are
        samples = peak_normalize(samples)
    samples = samples[int(round(settings.offset * settings.sample_rate)) :]
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(samples))] = samples[:length]
    return out


def prefetched(make: Callable[[int], np.ndarray], count: int, workers: int) -> Iterator[np.ndarray]:
    """Make items 0 … count − 1 in threads and yield them in order, at most `2 × workers` ahead.

    Lazy: nothing is made before the first item is asked for (an existing cache entry asks none).

    Args:
        make: Makes item i.
        count: How many items.
        workers: Threads.

    Yields:
        The items, in order.
    """
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque = deque()
        for i in range(count):
            pending.append(pool.submit(make, i))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@dataclass(frozen=True)
class WholeArrays:
    """The ragged caches of one table: row i of each is the table's row i.

    Attributes:
        key: The entries' key.
        waveforms: Each clip's samples.
        features: Each clip's features, frames first: `(frames, C, F)` per row.
    """

    key: str
    waveforms: RaggedArray
    features: RaggedArray


def check_whole_clips(
    store: FeatureStore,
    max_duration_s: float | None,
    train_input: str,
    augmented_in_workers: bool,
    offline_copies: bool,
    placement: str,
) -> None:
    """Refuse settings that whole clips (`data.duration=null`) cannot work with yet.

    Args:
        store: The run's feature store (its audio settings and extractor).
        max_duration_s: `data.max_duration_s`.
        train_input: `data.train_input`.
        augmented_in_workers: Whether waveform augmentation runs on the fly.
        offline_copies: Whether offline augmented copies are asked for.
        placement: `data.placement`.

    Raises:
        InvalidSetting: naming the setting and what to set instead.
    """
    if not store.audio.whole_clips:
        if max_duration_s is not None:
            raise InvalidSetting(
                f"data.max_duration_s={max_duration_s} caps whole clips, but data.duration={store.audio.duration} "
                "already gives every clip one length; set data.duration=null (whole clips) or data.max_duration_s=null"
            )
        return
    if max_duration_s is not None and not max_duration_s > 0:
        raise InvalidSetting(
            f"data.max_duration_s={max_duration_s} must be a positive number of seconds, or null"
        )
    unsupported = {
        "data.train_input=waveform (set data.train_input=features)": train_input != "features",
        "augmentation.waveform on the fly (use augmentation=none or specaugment)": augmented_in_workers,
        "augmentation.offline_copies (set augmentation.offline_copies=0)": offline_copies,
        f"data.placement={placement} (set data.placement=host)": placement != "host",
        "features.normalization=dataset (set features.normalization=utterance)": (
            store.features.normalization == "dataset"
        ),
    }
    for what, found in unsupported.items():
        if found:
            raise InvalidSetting(
                f"data.duration=null (whole clips) does not work with {what}, or set data.duration to a clip "
                "length in seconds"
            )


class WholeClipStore:
    """Builds and opens the whole-length caches of a table, and serves their splits.

    It uses the feature store's extractor, audio settings (`duration` and `crop` are not used:
    clips are whole) and cache folder, lock and verification. `keys`, `ensure` and `load` are
    the feature store's, so the data module uses either alike.

    Args:
        store: The run's feature store.
        max_duration_s: The longest training clip in seconds (longer ones are cropped at a place
            drawn from (epoch seed, row)); None trains on whole clips. Evaluation takes whole clips.
    """

    def __init__(self, store: FeatureStore, max_duration_s: float | None = None):
        self.store = store
        self.max_duration_s = max_duration_s

    def keys(self, table: pd.DataFrame) -> str:
        """Compute the entries' key (the feature store's name for it).

        Returns:
            `key(table)`.
        """
        return self.key(table)

    def dataset(
        self, arrays: WholeArrays, split: str, rows: np.ndarray, labels: np.ndarray
    ) -> RaggedUtterances:
        """Serve one split's whole-length features, padded per batch.

        Args:
            arrays: The opened caches.
            split: "train", "val" or "test": only train clips are capped at `max_duration_s`.
            rows: The split's table rows.
            labels: Every table row's label.

        Returns:
            The split's dataset, batches `(B, C, F, T)` with their frame `lengths`.
        """
        cap = None
        if split == "train" and self.max_duration_s is not None:
            samples = int(round(self.max_duration_s * self.store.audio.sample_rate))
            cap = self.store.features.output_shape(samples)[2]
        return RaggedUtterances(arrays.features, rows, labels, "features", cap, time_last=True)

    def key(self, table: pd.DataFrame) -> str:
        """Compute the key of a table's whole-length entries without building anything.

        Returns:
            A key over the files, the audio settings that matter, and the extractor's parameters.
        """
        audio = self.store.audio
        return cache_key(
            files=file_fingerprint(table["path"]),
            sample_rate=audio.sample_rate,
            offset=audio.offset,
            peak_normalize=audio.peak_normalize,
            features=self.store.features.cache_params(),
            version=WHOLE_CACHE_VERSION,
        )

    def ensure(self, table: pd.DataFrame, corpus_root: str | None = None) -> str:
        """Build whatever of the table's whole-length caches is missing.

        Args:
            table: The utterance table (its `path` column, in order).
            corpus_root: The corpus folder, recorded in the waveform entry's metadata.

        Returns:
            The entries' key.
        """
        key = self.key(table)
        paths = table["path"].tolist()
        audio, features, cache = self.store.audio, self.store.features, self.store.cache
        lengths = self._lengths(key, paths)
        meta = {"audio": audio.to_dict(), "num_files": len(paths), "corpus_root": corpus_root}
        # decoded in threads (soundfile and soxr release the GIL), in order, a bounded number ahead
        clips = prefetched(lambda i: load_whole(paths[i], audio, int(lengths[i])), len(paths), self.workers)

        def decode(i: int, out: np.ndarray) -> None:
            out[:] = next(clips)

        built = build_ragged(cache, WAVEFORM_KIND, key, lengths, (), decode, meta)
        self.store.events.append(f"{'built' if built else 'reused'} whole-length waveforms")
        waveforms = load_ragged(cache, WAVEFORM_KIND, key)
        channels, n_features, _ = features.output_shape(int(lengths.max()))
        frames = np.array([features.output_shape(int(n))[2] for n in lengths], dtype=np.int64)

        def compute(i: int, out: np.ndarray) -> None:
            with torch.inference_mode():
                clip = features.extract(torch.from_numpy(np.array(waveforms[i]))[None])[0].numpy()
            out[:] = np.moveaxis(clip, -1, 0)  # frames first, the ragged axis

        meta = {"features": features.cache_params()}
        built = build_ragged(cache, FEATURE_KIND, key, frames, (channels, n_features), compute, meta)
        self.store.events.append(f"{'built' if built else 'reused'} whole-length features")
        return key

    @property
    def workers(self) -> int:
        """Decoding threads: `data.decode_workers`, else 8."""
        return self.store.decode_workers or 8

    def _lengths(self, key: str, paths: list[str]) -> np.ndarray:
        """Read the clips' lengths from an intact lengths entry, else from the files' headers.

        Returns:
            Each clip's samples.
        """
        kind = lengths_kind(WAVEFORM_KIND)
        if (
            self.store.cache.exists(kind, key)
            and self.store.cache.damage(kind, key, (len(paths),), "int64") is None
        ):
            return np.array(self.store.cache.load(kind, key))
        return np.array([whole_length(p, self.store.audio) for p in paths], dtype=np.int64)

    def load(self, key: str) -> WholeArrays:
        """Open built whole-length caches, memory-mapped read-only.

        Returns:
            The ragged waveforms and features.
        """
        cache = self.store.cache
        return WholeArrays(key, load_ragged(cache, WAVEFORM_KIND, key), load_ragged(cache, FEATURE_KIND, key))


def clip_caches(
    store: FeatureStore,
    max_duration_s: float | None,
    train_input: str,
    waveform_augmentation: object | None,
    offline_copies: object | None,
    loader: LoaderSettings,
) -> FeatureStore | WholeClipStore:
    """Choose the caches a data module serves clips from, after checking the settings.

    Args:
        store: The run's feature store.
        max_duration_s: `data.max_duration_s`.
        train_input: `data.train_input`.
        waveform_augmentation: On-the-fly waveform augmentation, if any.
        offline_copies: Offline augmented copies, if any.
        loader: The loader settings (`data.placement`).

    Returns:
        The feature store itself for fixed-length clips, a WholeClipStore over it for whole clips.
    """
    check_whole_clips(
        store,
        max_duration_s,
        train_input,
        waveform_augmentation is not None,
        offline_copies is not None,
        loader.placement,
    )
    return WholeClipStore(store, max_duration_s) if store.audio.whole_clips else store


def shuffle_sampler(
    caches: FeatureStore | WholeClipStore,
    dataset: Dataset,
    loader: LoaderSettings,
    epoch: Callable[[], int | None],
    item_seeds: bool,
    num_replicas: int,
    rank: int,
) -> EpochSeededShuffle:
    """Draw the train order of a split from (seed, epoch): a plain shuffle, or by length for whole clips.

    Whole clips come with their epoch seed (for the crop of clips longer than `max_duration_s`).

    Args:
        caches: What `clip_caches` chose.
        dataset: The train split.
        loader: The loader settings (batch size, shuffle seed).
        epoch: Returns the epoch an iteration belongs to.
        item_seeds: Whether the fixed-length dataset draws random numbers per item.
        num_replicas: The number of DDP ranks.
        rank: This rank.

    Returns:
        The sampler.
    """
    if isinstance(caches, WholeClipStore):
        lengths = dataset.lengths()
        return LengthBucketedShuffle(
            lengths, loader.batch_size, loader.shuffle_seed, epoch, True, num_replicas, rank
        )
    return EpochSeededShuffle(len(dataset), loader.shuffle_seed, epoch, item_seeds, num_replicas, rank)
