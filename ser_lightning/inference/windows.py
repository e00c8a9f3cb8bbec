"""Cutting a whole recording into the fixed-length windows a model was trained on.

A clip is first conditioned exactly as in training (non-finite samples zeroed, peak-normalised
over the whole clip, the first `offset` seconds skipped). Then:

- a clip no longer than the model's window is zero-padded: one window, the very input training
  and eval give the model for that file;
- a longer clip is covered by overlapping windows spread evenly from its start to its end, at
  most `hop` seconds apart (`long_clips="windows"`), or cut once as training cut it
  (`long_clips="crop"`: the centre or start window, what eval scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ser_lightning.audio_settings import AudioSettings, condition, fit_length
from ser_lightning.utils.errors import InvalidSetting

LONG_CLIP_MODES = ("windows", "crop")


@dataclass(frozen=True)
class ClipWindows:
    """The windows of one clip, as a view on the clip (long recordings are not copied)."""

    source: np.ndarray  # the conditioned samples the windows are cut from
    starts: np.ndarray  # first sample of each window in `source`
    window: int  # samples per window
    origin: int  # sample of the original file where `source` begins
    sample_rate: int
    clip_seconds: float  # length of the decoded file

    def __len__(self) -> int:
        return len(self.starts)

    def window_view(self, index: int) -> np.ndarray:
        """Get one window without copying it.

        Returns:
            Window `index` as a view of the source, `(window,)`.
        """
        start = int(self.starts[index])
        return self.source[start : start + self.window]

    def take(self, indices: ArrayLike) -> np.ndarray:
        """Copy some windows out into one array.

        Args:
            indices: the windows' indices.

        Returns:
            The windows, `(len(indices), window)` float32.
        """
        return np.stack([self.window_view(int(i)) for i in np.asarray(indices)]).astype(np.float32)

    def spans(self) -> list[tuple[float, float]]:
        """Place each window in the original file.

        Returns:
            (start, end) of each window in seconds of the original file; padding is not counted.
        """
        rate = self.sample_rate
        return [
            ((self.origin + s) / rate, min((self.origin + s + self.window) / rate, self.clip_seconds))
            for s in self.starts.tolist()
        ]


def check_window_options(hop: float, long_clips: str) -> None:
    """Refuse settings that would fail every file, before any is decoded.

    Args:
        hop: seconds between windows of long clips.
        long_clips: one of LONG_CLIP_MODES.

    Raises:
        InvalidSetting: when `long_clips` is not a known mode or `hop` is not positive.
    """
    if long_clips not in LONG_CLIP_MODES:
        raise InvalidSetting(f"long_clips={long_clips!r} must be one of {LONG_CLIP_MODES}")
    if hop <= 0:
        raise InvalidSetting(f"hop={hop} must be a positive number of seconds")


def clip_windows(
    wave: np.ndarray, settings: AudioSettings, hop: float, long_clips: str = "windows"
) -> ClipWindows:
    """Cut a decoded mono clip at `settings.sample_rate` into the model's windows (see the module docstring).

    Args:
        wave: the decoded clip, before conditioning.
        settings: the model's audio settings (rate, window length, offset, crop, normalisation).
        hop: the most seconds between the starts of windows of a long clip.
        long_clips: "windows" to cover a long clip with overlapping windows, "crop" to cut it once
            as training did.

    Returns:
        The clip's windows, a view on its conditioned samples.
    """
    check_window_options(hop, long_clips)
    if settings.whole_clips:  # a model trained on whole clips scores the whole file as one window
        return whole_clip_window(wave, settings)
    rate, window = settings.sample_rate, settings.num_samples
    clip_seconds = len(wave) / rate
    wave = condition(wave, settings)
    skip = min(int(round(settings.offset * rate)), len(wave))
    body = wave[skip:]
    if len(body) <= window or long_clips == "crop":
        # Exactly training's view of the file (fit_length applies offset and crop itself).
        begin = skip + (0 if len(body) <= window or settings.crop == "start" else (len(body) - window) // 2)
        return ClipWindows(fit_length(wave, settings), np.array([0]), window, begin, rate, clip_seconds)
    hop_samples = max(1, int(round(hop * rate)))
    count = 1 + math.ceil((len(body) - window) / hop_samples)
    starts = np.linspace(0, len(body) - window, count).round().astype(np.int64)
    return ClipWindows(body, starts, window, skip, rate, clip_seconds)


def whole_clip_window(wave: np.ndarray, settings: AudioSettings) -> ClipWindows:
    """Make the one window of a whole clip, for a model trained on whole clips (`data.duration=null`).

    Conditioned and cut after `offset` as training's whole-length cache does.

    Args:
        wave: the decoded clip, before conditioning.
        settings: the model's audio settings (rate, offset, normalisation).

    Returns:
        One window: the clip after `offset` (one silent sample when nothing is left).
    """
    rate = settings.sample_rate
    clip_seconds = len(wave) / rate
    conditioned = condition(wave, settings)
    skip = min(int(round(settings.offset * rate)), len(conditioned))
    body = conditioned[skip:] if len(conditioned) > skip else np.zeros(1, dtype=np.float32)
    return ClipWindows(body, np.array([0]), len(body), skip, rate, clip_seconds)
