"""68 hand-crafted librosa features per frame (the seed-001 feature set), computed on CPU.

Per frame, at 22.05 kHz: 13 MFCC, their Δ and ΔΔ (39), chroma (12), spectral contrast (7),
tonnetz (6), zero-crossing rate, RMS energy, spectral roll-off and spectral centroid (4).
librosa cannot run on the training device, so these are always precomputed into the feature
cache, once, by a pool of worker processes (`precompute`), and every run after that reads
the cache.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import librosa
import numpy as np
import soxr
import torch

from ser_lightning.features.base import FeatureExtractor
from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.numba_cache import prepare_numba_cache

# (name, rows) in output order; the one record of what each of the 68 rows holds.
FEATURE_BLOCKS: tuple[tuple[str, int], ...] = (
    ("mfcc", 13),
    ("mfcc_delta", 13),
    ("mfcc_delta2", 13),
    ("chroma", 12),
    ("spectral_contrast", 7),
    ("tonnetz", 6),
    ("zero_crossing_rate", 1),
    ("rms", 1),
    ("spectral_rolloff", 1),
    ("spectral_centroid", 1),
)
NUM_FEATURES = sum(rows for _, rows in FEATURE_BLOCKS)  # 68
DELTA_WIDTH = 9  # librosa.feature.delta's default regression window, in frames
NUMBA_WARM_UP = "handcrafted68"  # what prepare_numba_cache records warm_up_numba under


@dataclass(frozen=True)
class HandcraftedSettings:
    """What the per-clip computation needs; plain and picklable for the worker processes."""

    sample_rate: int  # rate of the waveforms handed in (data.sample_rate)
    analysis_rate: int  # rate librosa analyses at; waveforms are resampled to it when different
    n_fft: int
    hop_length: int

    def analysis_samples(self, num_samples: int) -> int:
        """Return the length of a clip of `num_samples` once resampled to `analysis_rate`."""
        return int(round(num_samples * self.analysis_rate / self.sample_rate))

    def natural_frames(self, num_samples: int) -> int:
        """Return the frame count librosa's centred frames give a clip of `num_samples` samples."""
        return self.analysis_samples(num_samples) // self.hop_length + 1


def _tonnetz(y: np.ndarray, sr: int, hop: int) -> np.ndarray:
    # The CQT behind tonnetz warns that its lowest, most downsampled octaves are shorter than
    # n_fft on short clips; that is expected and the result is still defined, so keep logs clean.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"n_fft=\d+ is too large for input signal")
        return librosa.feature.tonnetz(y=y, sr=sr, hop_length=hop)


def handcrafted_frames(wave: np.ndarray, settings: HandcraftedSettings) -> np.ndarray:
    """The 68 features of one clip, in FEATURE_BLOCKS order.

    Args:
        wave: One clip at `settings.sample_rate`, `(samples,)`.
        settings: The rates and STFT settings.

    Returns:
        `(68, frames)` float32, every block cut to the shortest block's frame count.
    """
    y = np.asarray(wave, dtype=np.float32)
    sr, n_fft, hop = settings.analysis_rate, settings.n_fft, settings.hop_length
    if settings.sample_rate != sr:
        y = soxr.resample(y, settings.sample_rate, sr, quality="HQ").astype(np.float32)
    # One STFT serves every spectral feature (librosa would compute the same one four times).
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13, n_fft=n_fft, hop_length=hop)
    blocks = [
        mfcc,
        librosa.feature.delta(mfcc, width=DELTA_WIDTH),
        librosa.feature.delta(mfcc, width=DELTA_WIDTH, order=2),
        librosa.feature.chroma_stft(S=magnitude**2, sr=sr, n_fft=n_fft, hop_length=hop),
        librosa.feature.spectral_contrast(S=magnitude, sr=sr, n_fft=n_fft, hop_length=hop),
        _tonnetz(y, sr, hop),
        librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
        librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop),
        librosa.feature.spectral_rolloff(S=magnitude, sr=sr, n_fft=n_fft, hop_length=hop),
        librosa.feature.spectral_centroid(S=magnitude, sr=sr, n_fft=n_fft, hop_length=hop),
    ]
    # Every block is centred on the same hop grid; the CQT behind tonnetz can differ by a frame
    # at the end for some lengths, so cut to the common length rather than misalign rows.
    frames = min(block.shape[1] for block in blocks)
    return np.concatenate([block[:, :frames] for block in blocks], axis=0).astype(np.float32)


def warm_up_numba() -> None:
    """Call every numba-compiled librosa function `handcrafted_frames` uses, on 0.5 s of noise.

    numba compiles per argument type, and `handcrafted_frames` hands librosa float32 whatever the
    settings, so one call at the default settings covers all of them: the same cache files appear
    for 16/22.05/44.1 kHz input and n_fft 1024-4096 (checked by listing them). About 2 s when
    the cache is filled (loading, and librosa's lazy imports), ~20 s when it compiles.
    """
    wave = np.random.default_rng(0).standard_normal(11025).astype(np.float32) * 0.1
    handcrafted_frames(wave, HandcraftedSettings(22050, 22050, 2048, 512))


def fit_frames(features: np.ndarray, max_len: int) -> np.ndarray:
    """Zero-pad or truncate `(68, frames)` to `(68, max_len)` (the recipe's fixed sequence length).

    Returns:
        A new float32 array `(rows, max_len)`.
    """
    out = np.zeros((features.shape[0], max_len), dtype=np.float32)
    keep = min(max_len, features.shape[1])
    out[:, :keep] = features[:, :keep]
    return out


def _features_of_chunk(waves: np.ndarray, settings: HandcraftedSettings, max_len: int) -> np.ndarray:
    """Compute the features of a chunk of clips; runs inside a worker process.

    Returns:
        `(n, 1, 68, max_len)` float32 for `(n, samples)` waveforms.
    """
    return np.stack([fit_frames(handcrafted_frames(w, settings), max_len)[None] for w in waves])


def _limit_worker_threads() -> None:
    # One process per core already uses every core; BLAS threads inside each would oversubscribe.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


class Handcrafted68(FeatureExtractor):
    """`(batch, samples)` to `(batch, 1, 68, max_len)` hand-crafted librosa features.

    sample_rate is the rate of the waveforms handed in (it follows data.sample_rate, which the
    data module checks). The features are always analysed at `analysis_rate` (22.05 kHz, as in
    the recipe): waveforms at another rate are resampled first, so the features mean the same
    whatever the data settings; setting data.sample_rate=22050 (as seed001 does) decodes
    straight to that rate and skips the second resampling.

    max_len pads (with zeros) or truncates the frame sequence; null uses the natural frame count
    of data.duration. `num_workers` processes compute the cache (null: one per CPU core).
    """

    runs_on_device = False

    def __init__(
        self,
        sample_rate: int = 22050,
        analysis_rate: int = 22050,
        n_fft: int = 2048,
        hop_length: int = 512,
        max_len: int | None = None,
        normalization: str = "dataset",
        num_workers: int | None = None,
    ):
        super().__init__(n_features=NUM_FEATURES, normalization=normalization)
        if max_len is not None and max_len < 1:
            raise InvalidSetting(f"features.max_len={max_len} must be a positive number of frames (or null)")
        if num_workers is not None and num_workers < 1:
            raise InvalidSetting(
                f"features.num_workers={num_workers} must be at least 1 (or null for one per core)"
            )
        self.settings = HandcraftedSettings(sample_rate, analysis_rate, n_fft, hop_length)
        self.sample_rate = sample_rate
        self.max_len = max_len
        self.num_workers = num_workers

    def sequence_length(self, num_samples: int) -> int:
        """The frame count of the features of a clip of `num_samples` samples.

        Returns:
            `max_len` when set, else the clip's natural frame count.

        Raises:
            InvalidSetting: If the clip gives fewer frames than the Δ regression window needs.
        """
        natural = self.settings.natural_frames(num_samples)
        if natural < DELTA_WIDTH:
            raise InvalidSetting(
                f"features=handcrafted68 needs at least {DELTA_WIDTH} frames for its Δ features, but "
                f"{num_samples} samples at {self.sample_rate} Hz give {natural}; raise data.duration"
            )
        return self.max_len or natural

    def output_shape(self, num_samples: int) -> tuple[int, int, int]:
        """Return `(1, 68, sequence_length(num_samples))`."""
        return (1, NUM_FEATURES, self.sequence_length(num_samples))

    def extract(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Return the features `(batch, 1, 68, max_len)` of `(batch, samples)` waveforms, on the CPU."""
        prepare_numba_cache(NUMBA_WARM_UP, warm_up_numba)
        waves = waveforms.detach().cpu().numpy()
        max_len = self.sequence_length(waves.shape[-1])
        return torch.from_numpy(_features_of_chunk(waves, self.settings, max_len))

    def cache_params(self) -> dict:
        """Return the settings, `max_len` and librosa's version: what the cached bytes depend on."""
        # librosa's version is part of the key: its algorithms are what the cached bytes mean.
        return {
            "kind": "handcrafted68",
            **asdict(self.settings),
            "max_len": self.max_len,
            "librosa": librosa.__version__,
        }

    def precompute(
        self,
        waveforms: np.ndarray,
        out: np.ndarray,
        advance: Callable[[int], None] | None = None,
        chunk: int = 8,
    ) -> None:
        """Fill the cache with a pool of worker processes, in order, reporting each chunk.

        librosa's numba functions are loaded (or compiled, under a lock) here first, so that the
        workers never compile them at once and write the same cache files together.
        """
        prepare_numba_cache(NUMBA_WARM_UP, warm_up_numba)
        n = len(waveforms)
        max_len = self.sequence_length(waveforms.shape[-1])
        workers = min(self.num_workers or len(os.sched_getaffinity(0)), max(1, -(-n // chunk)))
        starts = range(0, n, chunk)
        if workers == 1:
            for start in starts:
                block = _features_of_chunk(waveforms[start : start + chunk], self.settings, max_len)
                out[start : start + len(block)] = block
                if advance is not None:
                    advance(len(block))
            return
        with ProcessPoolExecutor(max_workers=workers, initializer=_limit_worker_threads) as pool:
            futures = [
                pool.submit(
                    _features_of_chunk, np.array(waveforms[start : start + chunk]), self.settings, max_len
                )
                for start in starts
            ]
            for start, future in zip(starts, futures, strict=True):
                block = future.result()
                out[start : start + len(block)] = block
                if advance is not None:
                    advance(len(block))
