"""Decoding audio files to finite mono float32 at a chosen sample rate.

The one reader under both training (`data.audio`, which then crops, pads and normalises as
`audio_settings` says) and prediction (`inference.media`, which adds videos, FFmpeg's decoders
and a duration limit), so that a file decodes to the same samples in both: soundfile reads it,
channels are averaged, soxr resamples, and every sample that could come out NaN or inf is set to 0. Unreadable,
truncated and empty files raise AudioDecodeError, whose message names the file and the fix.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser_lightning.utils.errors import UserError

# The largest float32: a mixed, resampled or scaled sample beyond it would be inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class AudioDecodeError(UserError, RuntimeError):
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


def decode_error(path: str | Path, problem: object) -> AudioDecodeError:
    """Build the AudioDecodeError for `path`, from a decoder's exception or a sentence.

    Args:
        path: The file that could not be decoded.
        problem: A decoder's exception (soundfile's `error_string` is used when it has one) or
            a sentence saying what is wrong.

    Returns:
        The error (not raised), its problem without a trailing period.
    """
    # soundfile's own message repeats the path; its error_string is the part that explains.
    text = getattr(problem, "error_string", None) or str(problem)
    return AudioDecodeError(path, text.rstrip("."))


def _declared_wav_frames(path: str | Path) -> int | None:
    """Return the frames a PCM WAV header declares; None for other formats and streaming placeholders."""
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


def probe_audio(path: str | Path) -> sf._SoundFileInfo:
    """Read the header of a file that holds audio, or raise AudioDecodeError saying why not.

    A WAV whose data ends before its header says (an interrupted copy or download) is refused
    rather than padded: the label is for the whole take.

    Returns:
        soundfile's header info (`sf.info`): rate, channels, frames, format.

    Raises:
        AudioDecodeError: If soundfile cannot read the file, a WAV is truncated, or the file
            holds no samples (raised through `decode_error`).
    """  # noqa: DOC501 - raised as `decode_error(...)`, which builds an AudioDecodeError
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises several types for unreadable input
        raise decode_error(path, err) from err
    declared = _declared_wav_frames(path)
    if declared is not None and declared > info.frames:
        raise decode_error(
            path,
            f"it is truncated (its header declares {declared} frames, the file holds {info.frames})",
        )
    if info.frames <= 0:
        raise decode_error(path, "it holds no audio samples")
    return info


def decode_frames(path: str | Path, sample_rate: int, start: int = 0, frames: int = -1) -> np.ndarray:
    """Decode frames [start, start + frames) of a file (-1: to its end).

    Returns:
        The frames as finite mono float32 at `sample_rate`.

    Raises:
        AudioDecodeError: If soundfile cannot read them (raised through `decode_error`).
    """  # noqa: DOC501 - raised as `decode_error(...)`, which builds an AudioDecodeError
    try:
        data, file_rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as err:
        raise decode_error(path, err) from err
    return mix_and_resample(data, file_rate, sample_rate)


def read_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Read a whole file as mono float32 at `sample_rate`, whatever its channels, depth and rate.

    Returns:
        The finite mono samples.

    Raises:
        AudioDecodeError: If the file is unreadable, truncated or empty (from `probe_audio`
            and `decode_frames`).
    """
    probe_audio(path)
    return decode_frames(path, sample_rate)


def mix_and_resample(data: np.ndarray, file_rate: int, sample_rate: int) -> np.ndarray:
    """Decoded samples `(frames, channels)` at `file_rate` to finite mono float32 at `sample_rate`.

    Every step that could make a sample non-finite is cleaned after: decoding (a float WAV can
    hold NaN or inf), the channel mean and resampling (both can overflow float32 on a float WAV
    near its limit).

    Returns:
        Contiguous finite mono float32 samples at `sample_rate`.
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
    """Return a copy of the samples with NaN and inf replaced by 0 (they would poison features and loss)."""
    return np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)


def _resample(mono: np.ndarray, file_rate: int, sample_rate: int) -> np.ndarray:
    """Resample with soxr's high quality, safe near the float32 limit.

    soxr computes in single precision and overshoots a full-scale edge by up to ~70 %, which near
    the float32 limit is inf (a NaN once peak-normalised). A signal louder than 1 is resampled
    scaled to peak 1 (resampling is linear) and scaled back in float64, clipped to float32's range;
    a signal within [-1, 1] is resampled as it is.

    Returns:
        The resampled finite float32 samples.
    """
    headroom = max(float(np.max(np.abs(mono))), 1.0)
    resampled = soxr.resample(mono / np.float32(headroom), file_rate, sample_rate, quality="HQ")
    if headroom > 1.0:
        resampled = np.clip(resampled.astype(np.float64) * headroom, -FLOAT32_MAX, FLOAT32_MAX)
    return finite(resampled.astype(np.float32))


class MonoStream:
    """Blocks `(frames, channels)` at the file's rate, mixed to mono and resampled as they come.

    Only the mono result at `sample_rate` grows with the file (eight channels at 48 kHz would
    be 24 times the mono 16 kHz result); soxr's streaming resampler gives exactly the samples of
    its one-shot `soxr.resample` on the whole file, so the result matches `decode_frames` bit
    for bit.
    """

    def __init__(self, path: str | Path, file_rate: int, sample_rate: int):
        self.path, self.file_rate, self.sample_rate = path, file_rate, sample_rate
        self.resampler = (
            None
            if file_rate == sample_rate
            else soxr.ResampleStream(file_rate, sample_rate, 1, dtype="float32", quality="HQ")
        )
        self.frames = 0  # read at the file's rate
        self.chunks: list[np.ndarray] = []

    def add(self, block: np.ndarray) -> None:
        """Mix a decoded block `(frames, channels)` to mono and resample it onto the result."""
        self.frames += len(block)
        mono = mix_and_resample(block, self.file_rate, self.file_rate)  # mixed and made finite only
        self.chunks.append(mono if self.resampler is None else self.resampler.resample_chunk(mono))

    def finish(self) -> np.ndarray:
        """Return the whole mono result at `sample_rate` (float32), flushing the resampler first."""
        if self.resampler is not None:
            self.chunks.append(self.resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
        samples = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.float32)
        self.chunks = []
        return samples
