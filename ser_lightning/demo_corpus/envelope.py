"""The smooth on/off shape the synthesis stages share (vowels, creaky stretches, fricatives)."""

from __future__ import annotations

import numpy as np


def raised_cosine_envelope(length: int, attack: int, release: int) -> np.ndarray:
    """Ones with raised-cosine fades of `attack` and `release` samples, so nothing clicks.

    Args:
        length: the envelope's length in samples.
        attack: the fade-in, in samples (at most half the length).
        release: the fade-out, in samples.

    Returns:
        The envelope `(length,)`; zeros when it is too short (under 4 samples) to shape.
    """
    if length < 4:  # too short to shape (only at extreme spec values): stay silent
        return np.zeros(max(length, 0))
    envelope = np.ones(length)
    attack = max(1, min(attack, length // 2))
    release = max(1, min(release, length - attack))
    envelope[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    envelope[length - release :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(release) / release)
    return envelope
