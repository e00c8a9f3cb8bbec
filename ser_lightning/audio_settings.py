"""The audio settings a model is trained with, and the conditioning every clip gets from them.

Below both training (`data.audio`, `data.feature_store`) and prediction (`inference.windows`,
`inference.timeline`), beside `ser_lightning.decoding`: a checkpoint's audio settings turn a new
file into exactly the samples training saw, without prediction importing the data package.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ser_lightning.decoding import finite
from ser_lightning.utils.errors import InvalidSetting

# The clip length a network taking whole clips (data.duration=null) is sized for.
WHOLE_CLIP_SIZING_SECONDS = 3.0


@dataclass(frozen=True)
class AudioSettings:
    """Everything that turns a file into the waveform a model sees.

    Attributes:
        sample_rate: samples per second the clip is resampled to.
        duration: clip length in seconds; longer clips are cropped, shorter ones zero-padded.
            None keeps every clip whole (variable-length clips, `data.duration=null`).
        offset: seconds skipped at the start of every file before cropping.
        crop: where a longer clip is cut, "center" or "start" (after `offset` seconds).
        peak_normalize: scale each clip so that its largest sample is 1 (silence stays silence).

    Raises:
        InvalidSetting: a value out of range, or a `crop` other than "center" or "start".
    """

    sample_rate: int = 16000
    duration: float | None = 3.0
    offset: float = 0.0
    crop: str = "center"
    peak_normalize: bool = True

    def __post_init__(self) -> None:
        for key, value, ok in (
            ("sample_rate", self.sample_rate, self.sample_rate > 0),
            ("duration", self.duration, self.duration is None or self.duration > 0),
            ("offset", self.offset, self.offset >= 0),
        ):
            if not ok:
                raise InvalidSetting(
                    f"data.{key}={value} is out of range: sample_rate and duration must be > 0, offset >= 0"
                )
        if self.crop not in ("center", "start"):
            raise InvalidSetting(f"data.audio.crop={self.crop!r} must be 'center' or 'start'")

    @property
    def whole_clips(self) -> bool:
        """Whether clips keep their own lengths (`duration` None) instead of one fixed length."""
        return self.duration is None

    @property
    def num_samples(self) -> int:
        """Samples in one clip: `sample_rate * duration`, rounded.

        Raises:
            InvalidSetting: when clips are whole (`duration` None): they have no one length.
        """
        if self.duration is None:
            raise InvalidSetting(
                "data.duration=null keeps every clip whole, so clips have no fixed length; this step needs "
                "one: set data.duration to a clip length in seconds (e.g. data.duration=3.0)"
            )
        return int(round(self.sample_rate * self.duration))

    @property
    def sizing_samples(self) -> int:
        """Samples of the clip a network is sized for: `num_samples`, or 3 s of whole clips.

        Networks that take whole clips size themselves from the channels and features only; the
        frames of this nominal clip only check settings such as SpecAugment's mask widths.
        """
        return (
            int(round(self.sample_rate * WHOLE_CLIP_SIZING_SECONDS)) if self.whole_clips else self.num_samples
        )

    def to_dict(self) -> dict:
        """Return the settings as a plain dict (stored in checkpoints, hashed into cache keys)."""
        return asdict(self)


def fit_length(wave: np.ndarray, settings: AudioSettings) -> np.ndarray:
    """Crop or zero-pad a waveform to `settings.num_samples`, after skipping `settings.offset`.

    Args:
        wave: mono samples at `settings.sample_rate`.
        settings: the clip length, offset and crop position.

    Returns:
        Exactly `settings.num_samples` samples.
    """
    target = settings.num_samples
    start = int(round(settings.offset * settings.sample_rate))
    wave = wave[start:] if start < len(wave) else wave[:0]
    if len(wave) > target:
        begin = (len(wave) - target) // 2 if settings.crop == "center" else 0
        return wave[begin : begin + target]
    out = np.zeros(target, dtype=np.float32)
    out[: len(wave)] = wave
    return out


def peak_normalize(wave: np.ndarray) -> np.ndarray:
    """The wave scaled to peak 1, finite (an inf sample would make inf / inf = NaN of the rest).

    Args:
        wave: mono samples.

    Returns:
        The samples divided by their largest magnitude; silence is returned as it is.
    """
    peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
    return finite(wave / peak) if peak > 1e-8 else wave  # silence stays silence (no division by ~0)


def condition(wave: np.ndarray, settings: AudioSettings) -> np.ndarray:
    """Clean a whole decoded clip as training does: non-finite samples to 0, then peak-normalise if asked.

    Args:
        wave: decoded mono samples.
        settings: whether to peak-normalise (`settings.peak_normalize`).

    Returns:
        The finite, optionally peak-normalised samples (same length).
    """
    wave = finite(wave)
    return peak_normalize(wave) if settings.peak_normalize else wave
