"""Decoding audio to the fixed-length mono waveforms every model sees."""

from __future__ import annotations

import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

# A file longer than offset + duration by more than this is decoded only around its crop.
PARTIAL_READ_MARGIN_SECONDS = 30.0
# Audio read on each side of a partial window so that the resampler's edges fall outside the crop.
RESAMPLE_CONTEXT_SECONDS = 0.05
# The largest float32: a mixed, resampled or scaled sample beyond it would be inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class AudioDecodeError(RuntimeError):
    """An audio file that cannot be read; the message names the file and what to do.

    `problem` says what is wrong in words that do not repeat the path (for file lists).
    """

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(
            f"cannot decode audio file {self.path!r}: {problem}. Check that it is a complete audio "
            "file (wav, flac, ogg or mp3), or remove it from the corpus folder."
        )

    def __reduce__(self):  # picklable across worker processes despite the two-argument init
        return type(self), (self.path, self.problem)


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
                raise ValueError(
                    f"data.{key}={value} is out of range: sample_rate and duration must be > 0, offset >= 0"
                )
        if self.crop not in ("center", "start"):
            raise ValueError(f"data.audio.crop={self.crop!r} must be 'center' or 'start'")

    @property
    def num_samples(self) -> int:
        return int(round(self.sample_rate * self.duration))

    def to_dict(self) -> dict:
        return asdict(self)


def _decode_error(path: str | Path, problem: object) -> AudioDecodeError:
    # soundfile's own message repeats the path; its error_string is the part that explains.
    text = getattr(problem, "error_string", None) or str(problem)
    return AudioDecodeError(path, text.rstrip("."))


def _declared_wav_frames(path: str | Path) -> int | None:
    """Frames a PCM WAV header declares; None for other formats and streaming placeholders."""
    try:
        with wave.open(str(path), "rb") as handle:
            declared = handle.getnframes()
            frame_bytes = handle.getsampwidth() * handle.getnchannels()
    except (wave.Error, EOFError, OSError, ValueError):
        return None  # not a plain PCM WAV (float, extensible, flac, ...): libsndfile's count stands
    # Writers that stream to disk put 0 or 0xFFFFFFFF as the data size until they finish.
    if declared == 0 or declared * frame_bytes >= 0xFFFF0000:
        return None
    return declared


def probe_audio(path: str | Path):
    """soundfile's header info for a file that holds audio, or AudioDecodeError saying why not.

    A WAV whose data ends before its header says (an interrupted copy or download) is refused
    rather than padded: the label is for the whole take.
    """
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types for unreadable input
        raise _decode_error(path, err) from err
    declared = _declared_wav_frames(path)
    if declared is not None and declared > info.frames:
        raise _decode_error(
            path,
            f"it is truncated (its header declares {declared} frames, the file holds {info.frames})",
        )
    if info.frames <= 0:
        raise _decode_error(path, "it holds no audio samples")
    return info


def _decode(path: str | Path, sample_rate: int, start: int = 0, frames: int = -1) -> np.ndarray:
    """Frames [start, start + frames) of a file as finite mono float32 at `sample_rate`."""
    try:
        data, file_rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as err:
        raise _decode_error(path, err) from err
    return mix_and_resample(data, file_rate, sample_rate)


def mix_and_resample(data: np.ndarray, file_rate: int, sample_rate: int) -> np.ndarray:
    """Decoded samples `(frames, channels)` at `file_rate` to finite mono float32 at `sample_rate`.

    Shared by corpus decoding and by prediction's video/compressed-audio path, so that both
    mix and resample exactly alike. Every step that could make a sample non-finite is cleaned
    after: decoding (a float WAV can hold NaN or inf), the channel mean and resampling (both can
    overflow float32 on a float WAV near its limit).
    """
    data = finite(data)
    if data.shape[1] > 1:
        # the mean in float64: two channels near the float32 limit sum to inf in float32
        mono = finite(data.mean(axis=1, dtype=np.float64).astype(np.float32))
    else:
        mono = data[:, 0]
    if file_rate != sample_rate and len(mono) > 0:
        mono = _resample(mono, file_rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def finite(samples: np.ndarray) -> np.ndarray:
    """A copy of the samples with NaN and inf replaced by 0: they would poison every feature and the loss."""
    return np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)


def _resample(mono: np.ndarray, file_rate: int, sample_rate: int) -> np.ndarray:
    """soxr's high-quality resampling, safe near the float32 limit.

    soxr computes in single precision and overshoots a full-scale edge by up to ~70 %, which near
    the float32 limit is inf (a NaN once peak-normalised). A signal louder than 1 is resampled
    scaled to peak 1 (resampling is linear) and scaled back in float64, clipped to float32's range;
    a signal within [-1, 1] is resampled as it is.
    """
    headroom = max(float(np.max(np.abs(mono))), 1.0)
    resampled = soxr.resample(mono / np.float32(headroom), file_rate, sample_rate, quality="HQ")
    if headroom > 1.0:
        resampled = np.clip(resampled.astype(np.float64) * headroom, -FLOAT32_MAX, FLOAT32_MAX)
    return finite(resampled.astype(np.float32))


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read a whole file as mono float32 at `sample_rate`, whatever its channels, depth and rate."""
    probe_audio(path)
    return _decode(path, sample_rate)


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
        samples = _decode(path, settings.sample_rate)
        if settings.peak_normalize:
            samples = _peak_normalize(samples)
        return fit_length(samples, settings).astype(np.float32, copy=False)
    first, frames, skip = window
    crop = _decode(path, settings.sample_rate, first, frames)[skip : skip + settings.num_samples]
    if settings.peak_normalize:
        crop = _peak_normalize(crop)
    out = np.zeros(settings.num_samples, dtype=np.float32)
    out[: len(crop)] = crop
    return out
