"""Writing real audio files for the tests: sine tones in the shape of corpus files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def write_tone(
    path: Path,
    seconds: float = 0.5,
    sample_rate: int = 16000,
    freq: float = 220.0,
    channels: int = 1,
    subtype: str = "PCM_16",
    amplitude: float = 0.5,
) -> Path:
    """Write a sine tone as an audio file (the shape of real corpus files, tiny)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * freq * t)
    data = np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else wave
    sf.write(path, data, sample_rate, subtype=subtype)
    return path
