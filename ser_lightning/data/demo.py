"""A synthetic speech-emotion corpus in the RAVDESS layout, for offline training and tests.

The real RAVDESS cannot be downloaded everywhere this project runs, so `make train` and the
tests train on this corpus instead. It copies RAVDESS's design exactly (24 actors, 60 files
each, `Actor_XX/03-01-EE-II-SS-RR-AA.wav`, no strong neutral), so the RAVDESS parser, the
splits and the reports work on it unchanged. For measurements on larger corpora it can go on
past actor 24 (up to 98, the largest even two-digit code) with further speakers drawn the same
way; that adds files and leaves those of the first 24 actors unchanged.

The audio is speech-like rather than tones: a source-filter synthesiser (glottal pulses driven
by an intonation contour, vowel formants per syllable, consonant noise, room and microphone
colouring). Emotion is carried the way the acoustic literature describes it in acted speech,
by several cues at once (pitch level, range and contour shape, speaking rate, loudness,
spectral tilt, breathiness, jitter/shimmer, creak, tremor, articulation), each overlapping
between emotions. Speakers differ in timbre and pitch and in how they express each emotion,
so a speaker-independent split is harder than a random one, as it is on real data.

Every file is a pure function of (spec, file name fields): its random numbers come from a
generator seeded by those fields, so files are reproducible one by one, in any order, and the
same spec always gives byte-identical files.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from filelock import FileLock
from scipy import signal

from ser_lightning.labels import EMOTION_TO_RAVDESS_CODE, EMOTIONS, RAVDESS_EMOTION_CODES

# Bump whenever the audio a given spec produces changes, so that ensure_demo_corpus replaces
# corpora written by an older generator instead of silently mixing versions.
GENERATOR_VERSION = 1

MANIFEST_NAME = "demo_manifest.json"
# RAVDESS has 24 actors (the default). File names hold two-digit actor codes, so up to 98
# (odd male, even female); actors past 24 are extra speakers for larger corpora.
MAX_ACTORS = 98

MODALITY_AUDIO_ONLY = "03"
VOCAL_CHANNEL_SPEECH = "01"
INTENSITY_CODES = ("01", "02")  # normal, strong
STATEMENT_CODES = ("01", "02")  # "Kids are talking by the door", "Dogs are sitting by the door"
REPETITION_CODES = ("01", "02")

# Seed-stream tags keep the random numbers of speakers and of utterances independent.
_SPEAKER_STREAM = 1
_UTTERANCE_STREAM = 2


# --------------------------------------------------------------------------------------------
# Public specification and file design
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoCorpusSpec:
    """Everything that determines the demo corpus; equal specs give byte-identical corpora."""

    num_actors: int = 24  # even, 4..MAX_ACTORS, so both genders appear in every split
    duration: float = 3.0  # mean seconds per clip (each clip varies by up to +-10 %)
    sample_rate: int = 16000
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.num_actors, int) or self.num_actors < 4 or self.num_actors % 2:
            raise ValueError(
                f"num_actors={self.num_actors!r} must be an even integer >= 4 "
                "(odd actors are male, even female; both genders are needed)"
            )
        if self.num_actors > MAX_ACTORS:
            raise ValueError(
                f"num_actors={self.num_actors} exceeds {MAX_ACTORS}, the most that two-digit "
                "actor codes allow (RAVDESS itself has 24)"
            )
        if not 0.5 <= float(self.duration) <= 30.0:
            raise ValueError(f"duration={self.duration!r} must lie in [0.5, 30] seconds")
        if not isinstance(self.sample_rate, int) or self.sample_rate < 8000:
            raise ValueError(f"sample_rate={self.sample_rate!r} must be an integer >= 8000 Hz")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed={self.seed!r} must be a non-negative integer")

    def to_dict(self) -> dict:
        """Plain JSON-able form, as stored in the manifest and compared by ensure_demo_corpus."""
        return {
            "num_actors": int(self.num_actors),
            "duration": float(self.duration),
            "sample_rate": int(self.sample_rate),
            "seed": int(self.seed),
        }

    @property
    def num_files(self) -> int:
        return self.num_actors * files_per_actor()


@dataclass(frozen=True)
class DemoUtterance:
    """One file of the design, identified by its RAVDESS fields."""

    actor: int  # 1-based; odd = male, even = female
    emotion: str
    intensity: str  # "01" normal, "02" strong
    statement: str  # "01" kids, "02" dogs
    repetition: str  # "01", "02"

    @property
    def emotion_code(self) -> str:
        return EMOTION_TO_RAVDESS_CODE[self.emotion]

    @property
    def filename(self) -> str:
        return (
            f"{MODALITY_AUDIO_ONLY}-{VOCAL_CHANNEL_SPEECH}-{self.emotion_code}-{self.intensity}-"
            f"{self.statement}-{self.repetition}-{self.actor:02d}.wav"
        )

    @property
    def relative_path(self) -> Path:
        return Path(f"Actor_{self.actor:02d}") / self.filename

    @property
    def is_female(self) -> bool:
        return self.actor % 2 == 0


def files_per_actor() -> int:
    """60 in RAVDESS: neutral has only normal intensity (4 files), the others 8 each."""
    return sum(1 for _ in _actor_utterances(1))


def _actor_utterances(actor: int) -> Iterator[DemoUtterance]:
    for emotion in EMOTIONS:
        intensities = INTENSITY_CODES[:1] if emotion == "neutral" else INTENSITY_CODES
        for intensity in intensities:
            for statement in STATEMENT_CODES:
                for repetition in REPETITION_CODES:
                    yield DemoUtterance(actor, emotion, intensity, statement, repetition)


def iter_demo_utterances(spec: DemoCorpusSpec = DemoCorpusSpec()) -> Iterator[DemoUtterance]:
    """Every file of the corpus, in a fixed order (actor, emotion, intensity, statement, repetition)."""
    for actor in range(1, spec.num_actors + 1):
        yield from _actor_utterances(actor)


# --------------------------------------------------------------------------------------------
# Emotion cues
# --------------------------------------------------------------------------------------------

# The prosodic / voice-quality dimensions the synthesiser is driven by, with their units.
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
_CUE = {name: i for i, name in enumerate(CUES)}

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
_CUE_LIMITS = {
    "range": (-1.5, 1.5), "rate": (-0.6, 0.8), "breath": (0.0, 0.8), "jitter": (0.001, 0.04),
    "shimmer": (0.0, 0.15), "creak": (0.0, 0.9), "tremor": (0.0, 1.5),
    "articulation": (-1.0, 1.0), "smile": (-0.06, 0.1),
}
# fmt: on


def _cue_vector(values: dict[str, float]) -> np.ndarray:
    vector = np.zeros(len(CUES))
    for name, value in values.items():
        vector[_CUE[name]] = value
    return vector


EMOTION_CUES: dict[str, np.ndarray] = {e: _cue_vector(_EMOTION_CUE_TABLE[e]) for e in EMOTIONS}
_ACTOR_SPREAD_VECTOR = _cue_vector(_ACTOR_EXPRESSION_SPREAD)
_UTTERANCE_SPREAD_VECTOR = _cue_vector(_UTTERANCE_SPREAD)


# --------------------------------------------------------------------------------------------
# Phonetic material: the two RAVDESS statements as syllables
# --------------------------------------------------------------------------------------------

# F1-F3 (Hz) of an adult male vocal tract (Peterson & Barney 1952; Hillenbrand et al. 1995).
_VOWEL_FORMANTS: dict[str, tuple[float, float, float]] = {
    "i": (270.0, 2290.0, 3010.0),
    "I": (390.0, 1990.0, 2550.0),
    "a": (730.0, 1090.0, 2440.0),
    "o": (570.0, 840.0, 2410.0),
    "Q": (600.0, 950.0, 2450.0),
    "U": (440.0, 1020.0, 2240.0),
    "@": (500.0, 1500.0, 2500.0),
}
_NEUTRAL_VOWEL = np.array(_VOWEL_FORMANTS["@"])


@dataclass(frozen=True)
class _Syllable:
    onset: str  # consonant before the vowel: "k", "t" (voiceless stops), "b", "d", "dh"
    #             (voiced onsets), "s" (fricative) or "" (none)
    vowel_start: str  # vowel target at the start; differs from vowel_end for diphthongs
    vowel_end: str
    length: float  # relative duration
    stressed: bool
    coda: str = ""  # "z" adds a voiced fricative after the vowel
    pause_after: float = 0.0  # relative length of a following pause (word/phrase boundary)


_STATEMENTS: dict[str, tuple[_Syllable, ...]] = {
    # "Kids are talking by the door"
    "01": (
        _Syllable("k", "I", "I", 1.0, True, coda="z", pause_after=0.25),
        _Syllable("", "a", "a", 0.7, False),
        _Syllable("t", "o", "o", 1.1, True),
        _Syllable("k", "I", "I", 0.8, False, pause_after=0.5),
        _Syllable("b", "a", "I", 1.1, True),
        _Syllable("dh", "@", "@", 0.5, False),
        _Syllable("d", "o", "U", 1.4, True),
    ),
    # "Dogs are sitting by the door"
    "02": (
        _Syllable("d", "Q", "Q", 1.0, True, coda="z", pause_after=0.25),
        _Syllable("", "a", "a", 0.7, False),
        _Syllable("s", "I", "I", 1.1, True),
        _Syllable("t", "I", "I", 0.8, False, pause_after=0.5),
        _Syllable("b", "a", "I", 1.1, True),
        _Syllable("dh", "@", "@", 0.5, False),
        _Syllable("d", "o", "U", 1.4, True),
    ),
}

# Onset consonants: fraction of the syllable taken, silent closure fraction, noise band (Hz),
# noise level relative to the vowel, and whether the closure carries a low voice bar.
_ONSETS: dict[str, tuple[float, float, tuple[float, float], float, bool]] = {
    "": (0.0, 0.0, (0.0, 0.0), 0.0, False),
    "k": (0.24, 0.14, (1500.0, 3500.0), 0.35, False),
    "t": (0.24, 0.14, (3000.0, 6500.0), 0.35, False),
    "b": (0.14, 0.10, (600.0, 2000.0), 0.15, True),
    "d": (0.14, 0.10, (2000.0, 4500.0), 0.15, True),
    "dh": (0.16, 0.0, (2500.0, 6000.0), 0.10, True),
    "s": (0.32, 0.0, (4000.0, 7500.0), 0.30, False),
}

# Share of the clip filled by speech at neutral rate; the rest is leading/trailing silence.
_SPEECH_FRACTION = 0.62

# RMS over the vowels of a neutral take (dBFS); the share of a cue's loudness dB that reaches
# the recording; and the range peaks are squeezed into (speech has a ~12 dB crest factor).
_REFERENCE_LEVEL_DB = -18.0
_LEVEL_COMPRESSION = 0.5
_PEAK_RANGE = (0.3, 0.88)


# --------------------------------------------------------------------------------------------
# Speakers
# --------------------------------------------------------------------------------------------


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
    """Draw actor `actor`'s profile from (seed, actor) alone, so it never depends on which
    other actors or files are generated (the sample rate only shapes filters and room)."""
    rng = np.random.default_rng([seed, _SPEAKER_STREAM, actor])
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
    baseline = _cue_vector(
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
        emotion: (np.zeros(len(CUES)) if emotion == "neutral" else rng.normal(0.0, _ACTOR_SPREAD_VECTOR))
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
    """Direct sound plus an exponentially decaying diffuse tail: a small studio booth."""
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
    """Band limits of the actor's microphone chain (high-pass rumble filter, low-pass roll-off)."""
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
    """The cue vector one take realises: speaker habit + acted emotion + take-to-take noise."""
    speaker = speaker_profile(spec.seed, utterance.actor, spec.sample_rate)
    gain = STRONG_INTENSITY_GAIN if utterance.intensity == "02" else 1.0
    acted = (
        speaker.expressiveness * EMOTION_CUES[utterance.emotion] + speaker.emotion_offsets[utterance.emotion]
    )
    cues = speaker.baseline + gain * acted + rng.normal(0.0, _UTTERANCE_SPREAD_VECTOR)
    for name, (low, high) in _CUE_LIMITS.items():
        cues[_CUE[name]] = np.clip(cues[_CUE[name]], low, high)
    return cues


# --------------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------------


def _utterance_rng(spec: DemoCorpusSpec, utterance: DemoUtterance) -> np.random.Generator:
    return np.random.default_rng(
        [
            spec.seed,
            _UTTERANCE_STREAM,
            utterance.actor,
            int(utterance.emotion_code),
            int(utterance.intensity),
            int(utterance.statement),
            int(utterance.repetition),
        ]
    )


@functools.lru_cache(maxsize=32)
def _band_sos(low: float, high: float, sample_rate: int) -> np.ndarray:
    """Band-pass for consonant noise, clipped below Nyquist for low sample rates."""
    nyquist = sample_rate / 2
    high = min(high, 0.92 * nyquist)
    low = min(low, 0.6 * high)
    return signal.butter(2, [low, high], btype="bandpass", fs=sample_rate, output="sos")


@functools.lru_cache(maxsize=8)
def _aspiration_sos(sample_rate: int) -> np.ndarray:
    """Aspiration noise is turbulence at the glottis: mostly above ~1 kHz."""
    return signal.butter(2, 1000.0, btype="highpass", fs=sample_rate, output="sos")


def _vocal_tract_sos(formants: np.ndarray, sample_rate: int, scale: float) -> np.ndarray:
    """Cascade of unity-DC-gain two-pole resonators: F1-F3 of the vowel plus fixed F4/F5."""
    bandwidths = [80.0, 100.0, 140.0, 250.0, 320.0]
    centres = list(formants) + [3500.0 * scale, 4500.0 * scale]
    rows = []
    for centre, bandwidth in zip(centres, bandwidths, strict=True):
        if centre >= 0.45 * sample_rate:
            continue
        radius = np.exp(-np.pi * bandwidth / sample_rate)
        a1 = -2.0 * radius * np.cos(2.0 * np.pi * centre / sample_rate)
        a2 = radius * radius
        rows.append([1.0 + a1 + a2, 0.0, 0.0, 1.0, a1, a2])
    return np.asarray(rows)


def _raised_cosine_envelope(length: int, attack: int, release: int) -> np.ndarray:
    if length < 4:  # too short to shape (only at extreme spec values): stay silent
        return np.zeros(max(length, 0))
    envelope = np.ones(length)
    attack = max(1, min(attack, length // 2))
    release = max(1, min(release, length - attack))
    envelope[:attack] = 0.5 - 0.5 * np.cos(np.pi * np.arange(attack) / attack)
    envelope[length - release :] = 0.5 + 0.5 * np.cos(np.pi * np.arange(release) / release)
    return envelope


@dataclass
class _SyllableTiming:
    start: int  # first sample of the syllable (its onset consonant)
    vowel_start: int
    vowel_end: int  # end of the vowel (the coda, if any, follows)
    end: int  # end of syllable including coda, before any pause


def _syllable_timings(
    syllables: tuple[_Syllable, ...], speech_start: int, speech_len: int, rng: np.random.Generator
) -> list[_SyllableTiming]:
    lengths = np.array([s.length for s in syllables]) * rng.uniform(0.9, 1.1, len(syllables))
    pauses = np.array([s.pause_after for s in syllables]) * rng.uniform(0.7, 1.3, len(syllables))
    unit = speech_len / (lengths.sum() + pauses.sum())
    timings, cursor = [], float(speech_start)
    for syllable, length, pause in zip(syllables, lengths, pauses, strict=True):
        span = length * unit
        onset_fraction = _ONSETS[syllable.onset][0]
        coda_fraction = 0.18 if syllable.coda else 0.0
        start = int(round(cursor))
        vowel_start = int(round(cursor + onset_fraction * span))
        vowel_end = int(round(cursor + (1.0 - coda_fraction) * span))
        end = int(round(cursor + span))
        timings.append(_SyllableTiming(start, vowel_start, vowel_end, end))
        cursor += span + pause * unit
    return timings


def synthesize_utterance(spec: DemoCorpusSpec, utterance: DemoUtterance) -> np.ndarray:
    """Render one file's audio as float64 in [-1, 1]; deterministic in (spec, utterance)."""
    rng = _utterance_rng(spec, utterance)
    speaker = speaker_profile(spec.seed, utterance.actor, spec.sample_rate)
    cues = utterance_cues(spec, utterance, rng)
    cue = {name: float(cues[i]) for i, name in enumerate(CUES)}
    sr = spec.sample_rate
    syllables = _STATEMENTS[utterance.statement]

    # ---- timing: clip length varies +-10 %, speech length follows the speaking rate --------
    total = int(round(spec.duration * rng.uniform(0.9, 1.1) * sr))
    edge = int(min(0.15, 0.08 * spec.duration) * sr)  # silence kept before and after speech
    speech_len = int(min(_SPEECH_FRACTION * spec.duration * sr * 2.0 ** cue["rate"], total - 2 * edge))
    lead = edge + int((total - speech_len - 2 * edge) * rng.uniform(0.3, 0.6))
    timings = _syllable_timings(syllables, lead, speech_len, rng)
    t = np.arange(total) / sr
    progress = np.clip((np.arange(total) - lead) / max(speech_len, 1), 0.0, 1.0)

    # ---- intonation: level + slope + declination + pitch accents + drift + tremor ----------
    range_factor = 2.0 ** cue["range"]
    # Accents rise above a baseline; lowering that baseline by half a neutral accent keeps the
    # speaker's habitual f0 (f0_hz) at the median of a neutral take.
    semitones = (
        cue["pitch"] - 0.5 * speaker.accent_size + (cue["slope"] + speaker.declination) * (progress - 0.5)
    )
    centres = np.array([(s.vowel_start + s.vowel_end) / 2 for s in timings]) / sr
    widths = np.array([max(s.vowel_end - s.vowel_start, 1) for s in timings]) / sr * 0.45
    heights = np.array([speaker.accent_size if syl.stressed else 0.8 for syl in syllables])
    heights = range_factor * (heights + rng.normal(0.0, 0.5, len(syllables)))
    for centre, width, height in zip(centres, widths, heights, strict=True):
        lo, hi = (
            max(0, int((centre - 4 * width) * sr)),
            min(total, int((centre + 4 * width) * sr) + 1),
        )
        semitones[lo:hi] += height * np.exp(-0.5 * ((t[lo:hi] - centre) / width) ** 2)
    knots = np.arange(0.0, total / sr + 0.15, 0.15)
    semitones = semitones + np.interp(t, knots, rng.normal(0.0, 0.35, len(knots)))
    tremor_rate = rng.uniform(4.5, 7.5)
    semitones = semitones + cue["tremor"] * np.sin(2 * np.pi * tremor_rate * t + rng.uniform(0, 2 * np.pi))

    # ---- creak: some syllables (more often the last) fall into low, irregular vocal fry ----
    creak = np.zeros(total)
    for index, timing in enumerate(timings):
        probability = cue["creak"] * (2.0 if index == len(timings) - 1 else 1.0)
        if rng.uniform() < probability:
            onset = timing.vowel_start + int(0.35 * (timing.vowel_end - timing.vowel_start))
            length = timing.end - onset
            creak[onset : timing.end] = _raised_cosine_envelope(length, length // 3, length // 5)
    f0 = speaker.f0_hz * 2.0 ** (semitones / 12.0) * (1.0 - 0.45 * creak)
    f0 = np.clip(f0, 45.0, 0.2 * sr)

    # ---- glottal source: LF-like differentiated flow pulses with jitter and shimmer --------
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
    source = signal.lfilter([1.0, -(0.5 + tip)], [1.0, -(0.5 - tip)], source)

    # ---- vocal tract: per-syllable formant glides, consonant noise ------------------------
    formant_scale = speaker.formant_scale * (1.0 + cue["smile"]) * np.array(speaker.formant_quirks)
    expansion = 1.0 + 0.25 * cue["articulation"]
    arousal_f1 = 1.0 + 0.012 * cue["loudness"]  # louder speech opens the jaw: higher F1

    def vowel_formants(name: str) -> np.ndarray:
        target = np.array(_VOWEL_FORMANTS[name])
        target = _NEUTRAL_VOWEL + expansion * (target - _NEUTRAL_VOWEL)
        target = target * rng.normal(1.0, 0.03, 3)
        target[0] *= arousal_f1
        return target * formant_scale

    voiced = np.zeros(total)
    noise_bursts = []
    ring = int(0.03 * sr)
    previous_end = vowel_formants("@")
    stress_db = rng.normal(0.0, 1.2, len(syllables)) - 3.0 * np.linspace(0.0, 1.0, len(syllables))
    for syllable, timing, level_db in zip(syllables, timings, stress_db, strict=True):
        amplitude = 10.0 ** ((level_db - (0.0 if syllable.stressed else 3.0)) / 20.0)
        start_target = vowel_formants(syllable.vowel_start)
        end_target = (
            vowel_formants(syllable.vowel_end) if syllable.vowel_end != syllable.vowel_start else start_target
        )
        start_formants = 0.75 * start_target + 0.25 * previous_end  # coarticulation
        previous_end = end_target
        _, closure, band, noise_level, voice_bar = _ONSETS[syllable.onset]
        span = timing.end - timing.start
        vowel_len = timing.vowel_end - timing.vowel_start
        envelope = np.zeros(timing.end - timing.start)
        vowel_offset = timing.vowel_start - timing.start
        envelope[vowel_offset : vowel_offset + vowel_len] = _raised_cosine_envelope(
            vowel_len, int(0.025 * sr), int(0.045 * sr)
        )
        if voice_bar:  # voiced onsets keep weak voicing through their closure
            envelope[:vowel_offset] = np.maximum(envelope[:vowel_offset], 0.12)
        if syllable.coda:  # voiced fricative coda: weak voicing under the noise
            coda = envelope[vowel_offset + vowel_len :]
            coda[:] = np.maximum(coda, 0.15 * np.linspace(1.0, 0.0, coda.size))
        segment = source[timing.start : timing.end] * envelope * amplitude
        segment = np.concatenate([segment, np.zeros(min(ring, total - timing.end))])
        first = signal.sosfilt(_vocal_tract_sos(start_formants, sr, speaker.formant_scale), segment)
        last = signal.sosfilt(_vocal_tract_sos(end_target, sr, speaker.formant_scale), segment)
        glide = np.clip((np.arange(segment.size) - vowel_offset) / max(vowel_len, 1), 0.0, 1.0)
        voiced[timing.start : timing.start + segment.size] += (1.0 - glide) * first + glide * last
        if noise_level > 0:
            burst_start = timing.start + int(closure * span)
            burst_len = max(vowel_offset - int(closure * span), int(0.008 * sr))
            noise_bursts.append(
                (burst_start, burst_len, band, noise_level * amplitude, syllable.onset == "s")
            )
        if syllable.coda:
            coda_len = timing.end - timing.vowel_end
            noise_bursts.append((timing.vowel_end, coda_len, (3500.0, 7000.0), 0.12 * amplitude, True))

    active = np.zeros(total, dtype=bool)
    for timing in timings:
        active[timing.vowel_start : timing.vowel_end] = True
    vowel_rms = np.sqrt(np.mean(voiced[active] ** 2)) if active.any() else 1.0
    speech = voiced
    for start, length, band, level, sustained in noise_bursts:
        length = min(length, total - start)
        noise = signal.sosfilt(_band_sos(band[0], band[1], sr), rng.standard_normal(length))
        shape = (
            _raised_cosine_envelope(length, length // 4, length // 4)
            if sustained
            else np.exp(-np.arange(length) / (0.35 * length))  # burst then decaying aspiration
        )
        noise *= shape * level * vowel_rms / (np.std(noise) + 1e-12)
        speech[start : start + length] += noise

    # ---- recording: room, microphone, level, background noise -----------------------------
    speech = signal.fftconvolve(speech, speaker.room_ir)[:total]
    speech = signal.sosfilt(speaker.channel_sos, speech)
    active_rms = np.sqrt(np.mean(speech[active] ** 2)) + 1e-12
    # Takes are recorded with part of their loudness spread (a recording engineer rides the
    # gain), then peaks are squeezed smoothly into _PEAK_RANGE: nothing clips, nothing vanishes
    # into the noise floor, and louder takes stay louder.
    level_db = _REFERENCE_LEVEL_DB + _LEVEL_COMPRESSION * cue["loudness"] + rng.normal(0.0, 0.5)
    speech *= 10.0 ** (level_db / 20.0) / active_rms
    peak = np.max(np.abs(speech))
    low, high = np.log(_PEAK_RANGE[0]), np.log(_PEAK_RANGE[1])
    centre, half_width = 0.5 * (low + high), 0.5 * (high - low)
    squeezed = centre + half_width * np.tanh((np.log(peak) - centre) / half_width)
    speech *= np.exp(squeezed) / peak
    hiss = signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal(total))  # reddish room noise
    hiss *= 10.0 ** (speaker.noise_db / 20.0) / np.std(hiss)
    audio = speech + hiss
    return np.clip(audio, -0.99, 0.99)


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.round(audio * 32767.0).astype(np.int16)


# --------------------------------------------------------------------------------------------
# Writing the corpus
# --------------------------------------------------------------------------------------------


def _manifest(spec: DemoCorpusSpec) -> dict:
    return {
        "generator": "ser_lightning.data.demo",
        "generator_version": GENERATOR_VERSION,
        "spec": spec.to_dict(),
        "num_files": spec.num_files,
    }


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a demo corpus at root, or None when there is none (or it is unreadable)."""
    path = Path(root) / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_complete(root: Path, spec: DemoCorpusSpec) -> bool:
    """True when root holds the corpus of exactly this spec and generator version."""
    manifest = read_manifest(root)
    if manifest != _manifest(spec):
        return False
    # The manifest is written last, but a user may have deleted files since.
    return sum(1 for _ in root.glob("Actor_*/*.wav")) == spec.num_files


def generate_demo_corpus(
    root: str | Path, spec: DemoCorpusSpec = DemoCorpusSpec(), progress: bool = True
) -> Path:
    """Write the corpus under root (which must not exist or be empty). Returns root.

    The manifest is written last, so a corpus without one is known to be unfinished. Prefer
    ensure_demo_corpus, which also makes the write atomic and safe under concurrency.
    """
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{str(root)!r} exists and is not an empty folder; demo corpus not written")
    root.mkdir(parents=True, exist_ok=True)
    utterances = list(iter_demo_utterances(spec))
    for actor in range(1, spec.num_actors + 1):
        (root / f"Actor_{actor:02d}").mkdir()

    def write(utterance: DemoUtterance) -> None:
        audio = synthesize_utterance(spec, utterance)
        sf.write(
            root / utterance.relative_path,
            _to_pcm16(audio),
            spec.sample_rate,
            subtype="PCM_16",
            format="WAV",
        )

    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[bold]demo corpus[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns) as bar:
            task = bar.add_task("files", total=len(utterances))
            for utterance in utterances:
                write(utterance)
                bar.advance(task)
    else:
        for utterance in utterances:
            write(utterance)

    (root / MANIFEST_NAME).write_text(json.dumps(_manifest(spec), indent=2, sort_keys=True) + "\n")
    return root


def _staging_leftovers(root: Path) -> list[Path]:
    """Hidden sibling folders a killed ensure_demo_corpus of this very root left behind.

    Matched exactly (`.<name>.<token>.new-tmp` / `.old-tmp`, token without dots) so that the
    staging folders of a neighbouring root such as `<name>.x` are never taken for ours.
    """
    pattern = re.compile(rf"^\.{re.escape(root.name)}\.[A-Za-z0-9_]+\.(new|old)-tmp$")
    return [p for p in root.parent.iterdir() if pattern.match(p.name) and p.is_dir()]


def _ensure(root: Path, spec: DemoCorpusSpec, progress: bool, force: bool = False) -> bool:
    """ensure_demo_corpus's work; returns True when it (re)generated the corpus."""
    root = root.expanduser().absolute()
    root.parent.mkdir(parents=True, exist_ok=True)
    if not force and _is_complete(root, spec):  # fast path, no lock needed to read
        return False
    with FileLock(str(root.with_name(root.name + ".lock"))):
        # Another process may have finished the corpus while this one waited for the lock.
        if not force and _is_complete(root, spec):
            return False
        if root.exists() and (not root.is_dir() or (any(root.iterdir()) and read_manifest(root) is None)):
            raise FileExistsError(
                f"{str(root)!r} holds files that are not a demo corpus (no {MANIFEST_NAME}); "
                "refusing to replace them. Choose another root or remove the folder."
            )
        # Leftovers of runs that were killed mid-way: nobody else can be writing them now.
        for stale in _staging_leftovers(root):
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".new-tmp", dir=root.parent))
        try:
            generate_demo_corpus(staging, spec, progress=progress)
            if root.exists():
                retired = root.with_name(f".{root.name}.{uuid.uuid4().hex}.old-tmp")
                os.replace(root, retired)
                os.replace(staging, root)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                os.replace(staging, root)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return True


def ensure_demo_corpus(
    root: str | Path, spec: DemoCorpusSpec = DemoCorpusSpec(), progress: bool = True
) -> Path:
    """Generate the corpus at root if it is missing, or if its manifest differs from spec.

    Idempotent and cheap when the corpus is already there (files are left untouched). The new
    corpus is written into a hidden sibling folder and renamed into place under a sibling
    `<root>.lock` file lock, so a killed run never leaves a half corpus that looks complete and
    concurrent callers end with one good copy. Returns root.
    """
    _ensure(Path(root), spec, progress)
    return Path(root)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = DemoCorpusSpec()
    parser = argparse.ArgumentParser(
        prog="python -m ser_lightning.data.demo",
        description="Generate the synthetic RAVDESS-layout speech-emotion corpus (idempotent).",
    )
    parser.add_argument("--root", required=True, help="output folder, e.g. data/demo")
    parser.add_argument(
        "--actors",
        type=int,
        default=defaults.num_actors,
        help=f"even, 4..{MAX_ACTORS} (RAVDESS: 24)",
    )
    parser.add_argument("--duration", type=float, default=defaults.duration, help="mean seconds per clip")
    parser.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--force", action="store_true", help="regenerate even if an identical corpus exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = _parse_args(argv)
    console = Console()
    try:
        spec = DemoCorpusSpec(args.actors, args.duration, args.sample_rate, args.seed)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        return 2
    root = Path(args.root)
    started = time.perf_counter()
    try:
        generated = _ensure(root, spec, progress=True, force=args.force)
    except FileExistsError as err:
        console.print(f"[red]error:[/red] {err}")
        return 1
    seconds = time.perf_counter() - started
    files = sorted(root.glob("Actor_*/*.wav"))
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    emotions = {RAVDESS_EMOTION_CODES[f.name.split("-")[2]] for f in files}
    action = "generated" if generated else "already up to date"
    console.print(
        f"demo corpus {action} at [bold]{root}[/bold]: {len(files)} files, {spec.num_actors} actors, "
        f"{len(emotions)} emotions, {size_mb:.1f} MB, {spec.sample_rate} Hz, seed {spec.seed}, "
        f"{seconds:.1f} s",
        soft_wrap=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
