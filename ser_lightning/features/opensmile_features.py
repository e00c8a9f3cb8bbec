"""openSMILE's eGeMAPS and ComParE feature sets, the reference features of the field (CPU only).

The `opensmile` wheel ships the openSMILE binary, so extraction works offline. Two levels:

- `level: functionals`: one vector per clip (eGeMAPSv02: 88 values, ComParE_2016: 6,373), as
  features `(1, n, 1)`; the input of `model=linear`, `model=mlp` and the classical baselines
  (`python -m ser_lightning.baseline`).
- `level: lld`: the low-level descriptors per 10 ms frame (eGeMAPSv02: 25, ComParE_2016: 65), as
  a sequence `(1, n, frames)` for the sequence networks.

Like `handcrafted68`, the features are computed once into the feature cache (the extractor
declares `runs_on_device = False`), by a pool of worker processes.

`normalize` says how the values are scaled: `none`; `corpus`, the per-feature statistics of
the train split (the `dataset` normalisation of every other extractor); or `speaker`, each
speaker's clips z-scored with that speaker's own statistics, test speakers included (their
unlabelled clips). Speaker normalisation needs to know each clip's speaker, so it is applied by
`python -m ser_lightning.baseline` (which scales the features itself and builds this extractor
with `none`); a network run with `speaker` stops at start-up and asks for `corpus` instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from ser_lightning.features.base import FeatureExtractor
from ser_lightning.utils.errors import InvalidSetting

FEATURE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
LEVELS = {"functionals": "Functionals", "lld": "LowLevelDescriptors"}
NORMALIZE = ("none", "corpus", "speaker")
# the extractor's own normalisation for each `normalize` it takes (speaker: the baseline's)
_NORMALIZATION = {"none": "none", "corpus": "dataset"}


@lru_cache(maxsize=8)
def smile(feature_set: str, level: str) -> Any:
    """One openSMILE extractor per process and setting (building one reads its config files).

    Args:
        feature_set: `egemaps` or `compare`.
        level: `functionals` or `lld`.

    Returns:
        The `opensmile.Smile` object.
    """
    import opensmile

    return opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, FEATURE_SETS[feature_set]),
        feature_level=getattr(opensmile.FeatureLevel, LEVELS[level]),
    )


def feature_names(feature_set: str, level: str) -> list[str]:
    """Name every feature row, in the order of the features' rows.

    Args:
        feature_set: `egemaps` or `compare`.
        level: `functionals` or `lld`.

    Returns:
        openSMILE's feature names (e.g. `F0semitoneFrom27.5Hz_sma3nz_amean`).
    """
    return list(smile(feature_set, level).feature_names)


def clip_features(wave: np.ndarray, sample_rate: int, feature_set: str, level: str) -> np.ndarray:
    """The features of one clip, with undefined values (NaN, infinities) as zeros.

    Args:
        wave: One clip, `(samples,)`.
        sample_rate: Its rate in Hz.
        feature_set: `egemaps` or `compare`.
        level: `functionals` or `lld`.

    Returns:
        `(n_features, frames)` float32; one frame for functionals.
    """
    frame = smile(feature_set, level).process_signal(np.asarray(wave, dtype=np.float32), sample_rate)
    values = np.nan_to_num(frame.to_numpy(dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(values.T)


def _features_of_chunk(
    waves: np.ndarray, sample_rate: int, feature_set: str, level: str, frames: int
) -> np.ndarray:
    """Compute the features of a chunk of clips, cut or zero-padded to `frames`; runs in a worker.

    Returns:
        `(n, 1, n_features, frames)` float32.
    """
    blocks = []
    for wave in waves:
        values = clip_features(wave, sample_rate, feature_set, level)
        out = np.zeros((values.shape[0], frames), dtype=np.float32)
        keep = min(frames, values.shape[1])
        out[:, :keep] = values[:, :keep]
        blocks.append(out[None])
    return np.stack(blocks)


class OpenSmileFeatures(FeatureExtractor):
    """`(batch, samples)` to `(batch, 1, n_features, frames)` openSMILE features, on the CPU.

    Args:
        feature_set: `egemaps` (eGeMAPSv02) or `compare` (ComParE_2016).
        level: `functionals` (one vector per clip) or `lld` (a frame sequence).
        sample_rate: The rate of the waveforms handed in (data.sample_rate).
        normalize: `none` or `corpus` (train-split statistics per feature); `speaker` is
            refused here: the baseline entry point applies it and builds the extractor with `none`.
        num_workers: Worker processes that build the cache (null: one per CPU core).
    """

    runs_on_device = False

    def __init__(
        self,
        feature_set: str = "egemaps",
        level: str = "functionals",
        sample_rate: int = 16000,
        normalize: str = "corpus",
        num_workers: int | None = None,
    ):
        if feature_set not in FEATURE_SETS:
            raise InvalidSetting(
                f"features.feature_set={feature_set!r} must be one of {tuple(FEATURE_SETS)} "
                "(features=egemaps or features=compare)"
            )
        if level not in LEVELS:
            raise InvalidSetting(
                f"features.level={level!r} must be functionals (a vector per clip) or lld (a frame sequence)"
            )
        if normalize not in NORMALIZE:
            raise InvalidSetting(f"features.normalize={normalize!r} must be one of {NORMALIZE}")
        if normalize == "speaker":
            raise InvalidSetting(
                "features.normalize=speaker is applied by `python -m ser_lightning.baseline` only (it needs "
                "each clip's speaker); for a network set features.normalize=corpus or none"
            )
        if num_workers is not None and num_workers < 1:
            raise InvalidSetting(
                f"features.num_workers={num_workers} must be at least 1 (or null for one per core)"
            )
        self.feature_set, self.level, self.normalize_mode = feature_set, level, normalize
        super().__init__(
            n_features=len(feature_names(feature_set, level)), normalization=_NORMALIZATION[normalize]
        )
        self.sample_rate = sample_rate
        self.num_workers = num_workers

    @property
    def names(self) -> list[str]:
        """The name openSMILE gives each feature row, in order."""
        return feature_names(self.feature_set, self.level)

    def output_shape(self, num_samples: int) -> tuple[int, int, int]:
        """Return `(1, n_features, frames)`: one frame for functionals, openSMILE's count for LLDs."""
        return (1, len(self.names), _frame_count(num_samples, self.sample_rate, self.feature_set, self.level))

    def extract(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return the features `(batch, 1, n_features, frames)` of `(batch, samples)` waveforms."""
        waves = waveforms.detach().cpu().numpy()
        frames = self.output_shape(waves.shape[-1])[2]
        return torch.from_numpy(
            _features_of_chunk(waves, self.sample_rate, self.feature_set, self.level, frames)
        )

    def cache_params(self) -> dict:
        """Return the feature set, level, rate and opensmile's version: what the cached bytes depend on."""
        import opensmile

        return {
            "kind": "opensmile",
            "feature_set": FEATURE_SETS[self.feature_set],
            "level": self.level,
            "sample_rate": self.sample_rate,
            "opensmile": opensmile.__version__,
        }

    def precompute(
        self,
        waveforms: np.ndarray,
        out: np.ndarray,
        advance: Callable[[int], None] | None = None,
        chunk: int = 16,
    ) -> None:
        """Fill the cache with a pool of worker processes, in order, reporting each chunk."""
        n = len(waveforms)
        frames = out.shape[-1]
        args = (self.sample_rate, self.feature_set, self.level, frames)
        workers = min(self.num_workers or len(os.sched_getaffinity(0)), max(1, -(-n // chunk)))
        starts = range(0, n, chunk)
        if workers == 1:
            for start in starts:
                block = _features_of_chunk(np.asarray(waveforms[start : start + chunk]), *args)
                out[start : start + len(block)] = block
                if advance is not None:
                    advance(len(block))
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(_features_of_chunk, np.array(waveforms[s : s + chunk]), *args) for s in starts
            ]
            for start, future in zip(starts, futures, strict=True):
                block = future.result()
                out[start : start + len(block)] = block
                if advance is not None:
                    advance(len(block))


@lru_cache(maxsize=64)
def _frame_count(num_samples: int, sample_rate: int, feature_set: str, level: str) -> int:
    if level == "functionals":
        return 1
    silent = np.zeros(num_samples, dtype=np.float32)
    return int(clip_features(silent, sample_rate, feature_set, level).shape[1])
