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
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ser_lightning.audio_settings import AudioSettings, peak_normalize
from ser_lightning.data.cache import cache_key, file_fingerprint
from ser_lightning.data.feature_store import FeatureStore
from ser_lightning.data.ragged import RaggedArray, build_ragged, load_ragged
from ser_lightning.decoding import decode_frames, probe_audio

log = logging.getLogger(__name__)

WHOLE_CACHE_VERSION = 1
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
    samples = decode_frames(path, settings.sample_rate)[int(round(settings.offset * settings.sample_rate)) :]
    if settings.peak_normalize:
        samples = peak_normalize(samples)
    out = np.zeros(length, dtype=np.float32)
    out[: min(length, len(samples))] = samples[:length]
    return out


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


class WholeClipStore:
    """Builds and opens the whole-length caches of a table, beside a fixed-length FeatureStore.

    It uses the store's extractor, audio settings (`duration` and `crop` are not used: clips
    are whole) and cache folder, lock and verification.

    Args:
        store: The run's feature store.
    """

    def __init__(self, store: FeatureStore):
        self.store = store

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

    def ensure(self, table: pd.DataFrame) -> str:
        """Build whatever of the table's whole-length caches is missing.

        Args:
            table: The utterance table (its `path` column, in order).

        Returns:
            The entries' key.
        """
        key = self.key(table)
        paths = table["path"].tolist()
        audio, features, cache = self.store.audio, self.store.features, self.store.cache
        lengths = np.array([whole_length(p, audio) for p in paths], dtype=np.int64)
        meta = {"audio": audio.to_dict(), "num_files": len(paths)}

        def decode(i: int, out: np.ndarray) -> None:
            out[:] = load_whole(paths[i], audio, len(out))

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

    def load(self, key: str) -> WholeArrays:
        """Open built whole-length caches, memory-mapped read-only.

        Returns:
            The ragged waveforms and features.
        """
        cache = self.store.cache
        return WholeArrays(key, load_ragged(cache, WAVEFORM_KIND, key), load_ragged(cache, FEATURE_KIND, key))
