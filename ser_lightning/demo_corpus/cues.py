"""Emotion cues: the prosodic and voice-quality dimensions the synthesiser is driven by.

Also how far each emotion, actor and take moves them from a speaker's neutral.
"""

from __future__ import annotations

import numpy as np

from ser_lightning.labels import EMOTIONS

# The cues with their units, in the order of every cue vector.
CUES: tuple[str, ...] = (
    "pitch",  # mean f0 shift, semitones from the speaker's neutral
    "range",  # pitch-accent excursion, log2 factor (+1 = accents twice as large)
    "slope",  # global contour slope, semitones across the utterance (+ rising, - falling)
    "rate",  # syllable duration, log2 factor (+ slower)
    "loudness",  # level, dB
    "tilt",  # spectral brightness index (+ brighter/pressed, - darker/lax)
    "breath",  # aspiration-noise level relative to the glottal pulses
    "jitter",  # relative period-to-period f0 perturbation
    "shimmer",  # relative period-to-period amplitude perturbation
    "creak",  # probability that a syllable turns creaky (low, irregular, period-doubled)
    "tremor",  # 4-8 Hz f0 modulation depth, semitones
    "articulation",  # vowel-space expansion (+ hyper-articulated, - centralised)
    "smile",  # relative formant raise from lip spreading / shortened vocal tract
)
CUE_INDEX = {name: i for i, name in enumerate(CUES)}

# Deviation of each emotion from the speaker's neutral at normal intensity, after the
# acted-speech literature (Scherer 1986/2003; Banse & Scherer 1996; Juslin & Laukka 2003).
# Every cue is shared by several emotions so that none identifies an emotion alone.
# fmt: off
_EMOTION_CUE_TABLE: dict[str, dict[str, float]] = {
    "neutral": {},
    "calm": {
        "pitch": -1.0, "range": -0.25, "slope": -0.5, "rate": 0.15, "loudness": -3.0,
        "tilt": -0.6, "breath": 0.08, "creak": 0.03, "articulation": -0.2, "smile": 0.01,
    },
    "happy": {
        "pitch": 3.0, "range": 0.6, "slope": 0.5, "rate": -0.12, "loudness": 3.0,
        "tilt": 0.8, "jitter": 0.001, "creak": -0.05, "articulation": 0.3, "smile": 0.04,
    },
    "sad": {
        "pitch": -1.5, "range": -0.6, "slope": -1.5, "rate": 0.35, "loudness": -5.0,
        "tilt": -1.5, "breath": 0.18, "jitter": 0.004, "shimmer": 0.02, "creak": 0.08,
        "tremor": 0.25, "articulation": -0.6, "smile": -0.01,
    },
    "angry": {
        "pitch": 2.5, "range": 0.3, "slope": -2.0, "rate": -0.2, "loudness": 6.0,
        "tilt": 2.0, "breath": -0.08, "jitter": 0.003, "shimmer": 0.04, "articulation": 0.6,
    },
    "fearful": {
        "pitch": 4.0, "range": -0.1, "slope": 1.0, "rate": -0.22, "loudness": 0.5,
        "tilt": 0.4, "breath": 0.22, "jitter": 0.012, "shimmer": 0.03, "creak": -0.03,
        "tremor": 0.6, "articulation": -0.1,
    },
    "disgust": {
        "pitch": -1.8, "range": 0.2, "slope": -2.5, "rate": 0.25, "loudness": 1.0,
        "tilt": -0.2, "breath": 0.05, "jitter": 0.006, "shimmer": 0.05, "creak": 0.35,
        "articulation": 0.1, "smile": -0.03,
    },
    "surprised": {
        "pitch": 5.0, "range": 0.8, "slope": 6.0, "rate": -0.05, "loudness": 2.0,
        "tilt": 0.8, "breath": 0.1, "creak": -0.05, "articulation": 0.4, "smile": 0.02,
    },
}
if set(_EMOTION_CUE_TABLE) != set(EMOTIONS):  # labels.py is the source of the emotion list
    raise RuntimeError("the demo cue table must cover exactly ser_lightning.labels.EMOTIONS")

STRONG_INTENSITY_GAIN = 1.7  # strong intensity exaggerates the deviation from neutral

# How much one actor's way of expressing an emotion departs from the table (standard
# deviation per cue, drawn once per actor and emotion). This is what makes speakers unseen in
# training harder to classify than seen ones.
_ACTOR_EXPRESSION_SPREAD = {
    "pitch": 1.2, "range": 0.2, "slope": 1.2, "rate": 0.08, "loudness": 1.5, "tilt": 0.5,
    "breath": 0.05, "jitter": 0.002, "shimmer": 0.012, "creak": 0.06, "tremor": 0.1,
    "articulation": 0.2, "smile": 0.01,
}
# Take-to-take variation of one actor repeating the same emotion.
_UTTERANCE_SPREAD = {
    "pitch": 0.8, "range": 0.15, "slope": 0.8, "rate": 0.05, "loudness": 1.0, "tilt": 0.3,
    "breath": 0.03, "jitter": 0.0012, "shimmer": 0.008, "creak": 0.04, "tremor": 0.06,
    "articulation": 0.12, "smile": 0.006,
}
# Physically sensible limits applied after all offsets are summed.
CUE_LIMITS = {
    "range": (-1.5, 1.5), "rate": (-0.6, 0.8), "breath": (0.0, 0.8), "jitter": (0.001, 0.04),
    "shimmer": (0.0, 0.15), "creak": (0.0, 0.9), "tremor": (0.0, 1.5),
    "articulation": (-1.0, 1.0), "smile": (-0.06, 0.1),
}
# fmt: on


def cue_vector(values: dict[str, float]) -> np.ndarray:
    """The named cues as a vector in CUES order; cues not named are 0 (the speaker's neutral).

    Args:
        values: cue name -> value.

    Returns:
        One value per cue of CUES.
    """
    vector = np.zeros(len(CUES))
    for name, value in values.items():
        vector[CUE_INDEX[name]] = value
    return vector


EMOTION_CUES: dict[str, np.ndarray] = {e: cue_vector(_EMOTION_CUE_TABLE[e]) for e in EMOTIONS}
ACTOR_SPREAD_VECTOR = cue_vector(_ACTOR_EXPRESSION_SPREAD)
UTTERANCE_SPREAD_VECTOR = cue_vector(_UTTERANCE_SPREAD)
