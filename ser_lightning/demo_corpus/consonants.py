"""Consonant stage: band-passed noise for stop bursts, fricatives and voiced codas.

The noise is levelled against the vowels so that consonants stay in proportion however loud
the take is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import signal

from ser_lightning.demo_corpus.envelope import raised_cosine_envelope


@dataclass(frozen=True)
class NoiseBurst:
    """One consonant's noise: where it starts, how long it lasts, its band and level."""

    start: int  # first sample
    length: int  # samples (cut at the end of the clip)
    band: tuple[float, float]  # Hz
    level: float  # RMS relative to the vowels' RMS
    sustained: bool  # fricatives hold their noise; stop bursts decay into aspiration


@functools.lru_cache(maxsize=32)
def _band_sos(low: float, high: float, sample_rate: int) -> np.ndarray:
    """Band-pass for consonant noise, clipped below Nyquist for low sample rates.

    Returns:
        The filter's second-order sections.
    """
    nyquist = sample_rate / 2
    high = min(high, 0.92 * nyquist)
    low = min(low, 0.6 * high)
    return signal.butter(2, [low, high], btype="bandpass", fs=sample_rate, output="sos")


def add_consonant_noise(
    speech: np.ndarray, bursts: list[NoiseBurst], vowels: np.ndarray, sr: int, rng: np.random.Generator
) -> np.ndarray:
    """Add each burst's noise to speech in place (and return it); `vowels` masks the vowel samples.

    Args:
        speech: the voiced signal, changed in place.
        bursts: the consonants' noise bursts (`articulate`).
        vowels: True on the vowels' samples (`vowel_mask`); the bursts' levels are relative to them.
        sr: the sample rate.
        rng: the take's random stream.

    Returns:
        `speech`, with the noise added.
    """
    total = speech.size
    vowel_rms = np.sqrt(np.mean(speech[vowels] ** 2)) if vowels.any() else 1.0
    for burst in bursts:
        length = min(burst.length, total - burst.start)
        low, high = burst.band
        noise = signal.sosfilt(_band_sos(low, high, sr), rng.standard_normal(length))
        shape = (
            raised_cosine_envelope(length, length // 4, length // 4)
            if burst.sustained
            else np.exp(-np.arange(length) / (0.35 * length))  # burst then decaying aspiration
        )
        noise *= shape * burst.level * vowel_rms / (np.std(noise) + 1e-12)
        speech[burst.start : burst.start + length] += noise
    return speech
