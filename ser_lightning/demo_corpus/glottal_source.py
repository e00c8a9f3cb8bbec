"""Source stage: the excitation at the glottis.

LF-like differentiated flow pulses with jitter, shimmer, creak and aspiration noise, tipped
brighter or darker by the spectral tilt cue.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import signal

from ser_lightning.demo_corpus.speakers import SpeakerProfile


@functools.lru_cache(maxsize=8)
def _aspiration_sos(sample_rate: int) -> np.ndarray:
    """Aspiration noise is turbulence at the glottis: mostly above ~1 kHz.

    Returns:
        The high-pass filter's second-order sections.
    """
    return signal.butter(2, 1000.0, btype="highpass", fs=sample_rate, output="sos")


def glottal_source(
    speaker: SpeakerProfile,
    cue: dict[str, float],
    f0: np.ndarray,
    creak: np.ndarray,
    sr: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """The source signal, one sample per f0 value.

    Args:
        speaker: the actor's voice.
        cue: the take's cue values, by name.
        f0: the pitch in Hz per sample (`pitch_track`).
        creak: the creak envelope (0..1) per sample, which adds jitter.
        sr: the sample rate.
        rng: the take's random stream.

    Returns:
        The glottal pulses with their aspiration noise, spectrally tilted, `f0.shape`.
    """
    total = f0.size
    increment = f0 / sr
    nominal_period = np.floor(np.cumsum(increment)).astype(np.int64)
    periods = int(nominal_period[-1]) + 2
    period_noise = rng.standard_normal(periods)
    jitter = cue["jitter"] + 0.05 * creak
    phase = np.cumsum(increment * np.clip(1.0 + jitter * period_noise[nominal_period], 0.6, 1.4))
    period = np.floor(phase).astype(np.int64)
    p = phase - period
    open_quotient = np.clip(speaker.open_quotient + 0.3 * cue["breath"] - 0.04 * cue["tilt"], 0.35, 0.88)
    peak_time = 0.7 * open_quotient
    closing = open_quotient - peak_time
    return_time = 0.0008 * 2.0 ** (-0.5 * cue["tilt"])  # LF return phase: shorter = brighter
    period_seconds = 1.0 / f0
    pulse = np.where(
        p < peak_time,
        (closing / peak_time) * np.sin(np.pi * p / peak_time),
        np.where(
            p < open_quotient,
            -np.sin(0.5 * np.pi * (p - peak_time) / closing),
            -np.exp(-(p - open_quotient) * period_seconds / return_time),
        ),
    )
    shimmer = np.exp((cue["shimmer"] + 0.1 * creak) * rng.standard_normal(int(period[-1]) + 1)[period])
    doubling = 1.0 - 0.6 * creak * (period % 2)  # creak alternates strong and weak pulses
    pulse = pulse * shimmer * doubling
    aspiration = signal.sosfilt(_aspiration_sos(sr), rng.standard_normal(total))
    aspiration *= 0.35 * cue["breath"] * (0.4 + 0.6 * (p < open_quotient))
    source = pulse + aspiration
    # First-order tilt filter: a zero/pole pair that tips the spectrum brighter or darker.
    tip = float(np.clip(0.12 * cue["tilt"], -0.4, 0.4))
    return signal.lfilter([1.0, -(0.5 + tip)], [1.0, -(0.5 - tip)], source)
