"""Turning audio files into the fixed-length waveforms every model sees: the audio settings a
model is trained with, and decoding (ser_lightning.decoding) followed by peak normalisation and
cropping or zero-padding to the clip length."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ser_lightning.decoding import decode_frames, finite, probe_audio
from ser_lightning.utils.errors import InvalidSetting

# A file longer than offset + duration by more than this is decoded only around its crop.
PARTIAL_READ_MARGIN_SECONDS = 30.0
# Audio read on each side of a partial window so that the resampler's edges fall outside the crop.
RESAMPLE_CONTEXT_SECONDS = 0.05


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
        for key, value, ok in (
            ("sample_rate", self.sample_rate, self.sample_rate > 0),
            ("duration", self.duration, self.duration > 0),
            ("offset", self.offset, self.offset >= 0),
        ):
            if not ok:
                raise InvalidSetting(
                    f"data.{key}={value} is out of range: sample_rate and duration must be > 0, offset >= 0"
                )
        if self.crop not in ("center", "start"):
            raise InvalidSetting(f"data.audio.crop={self.crop!r} must be 'center' or 'start'")

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration))

    def to_dict(self) -> dict:
        return asdict(self)


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


def _partial_window(info, settings: AudioSettings) -> tuple[int, int, int] | None:
    """(first file frame, frame count, samples to skip after resampling) covering the crop of a
    long file, or None when the file is short enough to decode whole."""
    rate, file_rate = settings.sample_rate, info.samplerate
    length = int(round(info.frames * rate / file_rate))  # samples after resampling
    if length / rate <= settings.offset + settings.duration + PARTIAL_READ_MARGIN_SECONDS:
        return None
    target = settings.num_samples
    offset = int(round(settings.offset * rate))
    begin = offset + (length - offset - target) // 2 if settings.crop == "center" else offset
    file_begin = begin * file_rate / rate
    context = 0 if file_rate == rate else int(np.ceil(RESAMPLE_CONTEXT_SECONDS * file_rate))
    first = max(0, int(np.floor(file_begin)) - context)
    stop = min(info.frames, int(np.ceil(file_begin + target * file_rate / rate)) + context + 1)
    skip = int(round((file_begin - first) * rate / file_rate))
    return first, stop - first, skip


def _peak_normalize(wave: np.ndarray) -> np.ndarray:
    """The wave scaled to peak 1, finite (an inf sample would make inf / inf = NaN of the rest)."""
    peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
    return finite(wave / peak) if peak > 1e-8 else wave  # silence stays silence (no division by ~0)


def condition(wave: np.ndarray, settings: AudioSettings) -> np.ndarray:
    """Clean a whole decoded clip as training does: non-finite samples to 0, then peak-normalise if asked."""
    wave = finite(wave)
    return _peak_normalize(wave) if settings.peak_normalize else wave


def load_waveform(path: str | Path, settings: AudioSettings) -> np.ndarray:
    """Decode, mix to mono, resample, peak-normalise and crop/pad one file.

    A file longer than the clip by more than PARTIAL_READ_MARGIN_SECONDS is read only around
    its crop (so a 10-minute recording costs the memory of a few seconds), and is then
    peak-normalised on that crop; shorter files are normalised on the whole recording.
    """
    info = probe_audio(path)
    window = _partial_window(info, settings)
    if window is None:
        samples = decode_frames(path, settings.sample_rate)
        if settings.peak_normalize:
            samples = _peak_normalize(samples)
        return fit_length(samples, settings).astype(np.float32, copy=False)
    first, frames, skip = window
    crop = decode_frames(path, settings.sample_rate, first, frames)[skip : skip + settings.num_samples]
    if settings.peak_normalize:
        crop = _peak_normalize(crop)
    out = np.zeros(settings.num_samples, dtype=np.float32)
    out[: len(crop)] = crop
    return out
