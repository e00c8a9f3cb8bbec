"""Decoding audio to the fixed-length mono waveforms every model sees."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


class AudioDecodeError(RuntimeError):
    """An audio file that cannot be read; the message names the file and what to do."""


@dataclass(frozen=True)
class AudioSettings:
    """Everything that turns a file into the waveform a model sees.

    crop: where a longer clip is cut, "center" or "start" (after `offset` seconds).
    peak_normalize: scale each clip so that its largest sample is 1 (silence stays silence).
    """

    sample_rate: int = 16000
    duration: float = 3.0
    offset: float = 0.0
    crop: str = "center"
    peak_normalize: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.duration <= 0 or self.offset < 0:
            raise ValueError(
                f"audio settings need sample_rate > 0, duration > 0 and offset >= 0; got {asdict(self)}"
            )
        if self.crop not in ("center", "start"):
            raise ValueError(f"data.audio.crop={self.crop!r} must be 'center' or 'start'")

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration))

    def to_dict(self) -> dict:
        return asdict(self)


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read a file as mono float32 at `sample_rate`, whatever its channels, depth and rate."""
    try:
        data, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises several types for unreadable input
        raise AudioDecodeError(
            f"cannot decode audio file {str(path)!r}: {err}. Check that it is a complete audio file "
            "(wav, flac, ogg or mp3), or remove it from the corpus folder."
        ) from err
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if file_rate != sample_rate and len(mono) > 0:
        mono = soxr.resample(mono, file_rate, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def fit_length(wave: np.ndarray, settings: AudioSettings) -> np.ndarray:
    """Crop or zero-pad a waveform to settings.num_samples."""
    target = settings.num_samples
    start = int(round(settings.offset * settings.sample_rate))
    wave = wave[start:] if start < len(wave) else wave[:0]
    if len(wave) > target:
        begin = (len(wave) - target) // 2 if settings.crop == "center" else 0
        return wave[begin : begin + target]
    out = np.zeros(target, dtype=np.float32)
    out[: len(wave)] = wave
    return out


def load_waveform(path: str | Path, settings: AudioSettings) -> np.ndarray:
    """Decode, mix to mono, resample, peak-normalise and crop/pad one file."""
    wave = read_audio(path, settings.sample_rate)
    wave = np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)
    if settings.peak_normalize:
        peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
        if peak > 1e-8:
            wave = wave / peak
    return fit_length(wave, settings).astype(np.float32, copy=False)
