"""Speakers: each synthetic actor's voice, recording room and way of acting emotions.

Also the cues one take of theirs realises.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import signal

from ser_lightning.demo_corpus.cues import (
    ACTOR_SPREAD_VECTOR,
    CUE_INDEX,
    CUE_LIMITS,
    CUES,
    EMOTION_CUES,
    STRONG_INTENSITY_GAIN,
    UTTERANCE_SPREAD_VECTOR,
    cue_vector,
)
from ser_lightning.demo_corpus.design import DemoCorpusSpec, DemoUtterance
from ser_lightning.demo_corpus.seeds import speaker_rng
from ser_lightning.labels import EMOTIONS


@dataclass(frozen=True)
class SpeakerProfile:
    """One synthetic actor: timbre, habitual voice, recording room and expressive style."""

    actor: int
    is_female: bool
    f0_hz: float  # habitual neutral pitch
    formant_scale: float  # inverse vocal-tract length: scales every formant
    formant_quirks: tuple[float, float, float]  # per-formant idiosyncrasy (accent, anatomy)
    open_quotient: float  # habitual glottal open phase (higher = laxer, breathier)
    declination: float  # semitones the neutral contour falls across an utterance
    accent_size: float  # semitones of a neutral stressed-syllable pitch accent
    baseline: np.ndarray  # the speaker's own cue values in the CUES order
    expressiveness: float  # how strongly this actor acts emotions out
    emotion_offsets: dict[str, np.ndarray]  # idiosyncratic departure from the cue table
    room_ir: np.ndarray  # room impulse response (direct sound + reverberant tail)
    channel_sos: np.ndarray  # microphone / preamp band limits
    noise_db: float  # background noise level, dBFS RMS


@functools.lru_cache(maxsize=64)
def speaker_profile(seed: int, actor: int, sample_rate: int) -> SpeakerProfile:
    """Draw actor `actor`'s profile from (seed, actor) alone.

    It never depends on which other actors or files are generated (the sample rate only shapes
    filters and room).

    Args:
        seed: the corpus's seed.
        actor: the actor's number (odd: male, even: female).
        sample_rate: the corpus's sample rate.

    Returns:
        The actor's voice, room, microphone chain and acting style.
    """
    rng = speaker_rng(seed, actor)
    is_female = actor % 2 == 0
    if is_female:
        f0 = rng.uniform(175.0, 250.0)
        formant_scale = rng.normal(1.16, 0.04)
        open_quotient = rng.uniform(0.6, 0.72)
        breath = rng.uniform(0.08, 0.22)
        creak = rng.uniform(0.0, 0.06)
    else:
        f0 = rng.uniform(95.0, 145.0)
        formant_scale = rng.normal(1.0, 0.04)
        open_quotient = rng.uniform(0.5, 0.62)
        breath = rng.uniform(0.03, 0.14)
        creak = rng.uniform(0.02, 0.12)
    baseline = cue_vector(
        {
            "tilt": rng.normal(0.0, 0.6),
            "breath": breath,
            "jitter": rng.uniform(0.003, 0.008),
            "shimmer": rng.uniform(0.02, 0.05),
            "creak": creak,
            "rate": rng.normal(0.0, 0.1),
            "loudness": rng.normal(0.0, 2.0),  # microphone distance / gain
            "tremor": rng.uniform(0.0, 0.1),
        }
    )
    offsets = {
        emotion: (np.zeros(len(CUES)) if emotion == "neutral" else rng.normal(0.0, ACTOR_SPREAD_VECTOR))
        for emotion in EMOTIONS
    }
    # Drawn before the room response, whose length (and so number of draws) follows the rate.
    channel_sos = _channel_filter(rng, sample_rate)
    noise_db = float(rng.uniform(-60.0, -48.0))
    return SpeakerProfile(
        actor=actor,
        is_female=is_female,
        f0_hz=float(f0),
        formant_scale=float(formant_scale),
        formant_quirks=tuple(float(q) for q in rng.normal(1.0, 0.03, size=3)),
        open_quotient=float(open_quotient),
        declination=float(rng.normal(-2.0, 0.7)),
        accent_size=float(rng.normal(2.5, 0.5)),
        baseline=baseline,
        expressiveness=float(rng.uniform(0.6, 1.4)),
        emotion_offsets=offsets,
        room_ir=_room_impulse_response(rng, sample_rate),
        channel_sos=channel_sos,
        noise_db=noise_db,
    )


def _room_impulse_response(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Direct sound plus an exponentially decaying diffuse tail: a small studio booth.

    Returns:
        The room's impulse response.
    """
    rt60 = rng.uniform(0.12, 0.35)
    wet = rng.uniform(0.04, 0.15)
    length = int(rt60 * sample_rate)
    t = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9 * t / rt60)
    tail[: int(0.002 * sample_rate)] = 0.0  # first reflections arrive after ~2 ms
    tail *= wet / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0
    return tail


def _channel_filter(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Band limits of the actor's microphone chain (high-pass rumble filter, low-pass roll-off).

    Returns:
        The second-order sections of the high-pass and the low-pass filter.
    """
    nyquist = sample_rate / 2
    low = rng.uniform(60.0, 110.0)
    high = min(rng.uniform(5500.0, 7500.0), 0.9 * nyquist)
    return np.vstack(
        [
            signal.butter(2, low, btype="highpass", fs=sample_rate, output="sos"),
            signal.butter(2, high, btype="lowpass", fs=sample_rate, output="sos"),
        ]
    )


def utterance_cues(spec: DemoCorpusSpec, utterance: DemoUtterance, rng: np.random.Generator) -> np.ndarray:
    """The cue vector one take realises: speaker habit + acted emotion + take-to-take noise.

    Args:
        spec: the corpus's spec.
        utterance: the take.
        rng: the take's random stream.

    Returns:
        One value per cue of CUES, each within its limits.
    """
    speaker = speaker_profile(spec.seed, utterance.actor, spec.sample_rate)
    gain = STRONG_INTENSITY_GAIN if utterance.intensity == "02" else 1.0
    acted = (
        speaker.expressiveness * EMOTION_CUES[utterance.emotion] + speaker.emotion_offsets[utterance.emotion]
    )
    cues = speaker.baseline + gain * acted + rng.normal(0.0, UTTERANCE_SPREAD_VECTOR)
    for name, (low, high) in CUE_LIMITS.items():
        cues[CUE_INDEX[name]] = np.clip(cues[CUE_INDEX[name]], low, high)
    return cues
