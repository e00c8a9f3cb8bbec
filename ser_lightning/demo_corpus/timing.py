"""Timing stage: how long the clip is, and where speech, each syllable and its vowel fall.

The syllables follow the speaking rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser_lightning.demo_corpus.design import DemoCorpusSpec
from ser_lightning.demo_corpus.phonetics import ONSETS, Syllable

# Share of the clip filled by speech at neutral rate; the rest is leading/trailing silence.
_SPEECH_FRACTION = 0.62


@dataclass
class SyllableTiming:
    """Where one syllable falls in the clip, in samples."""

    start: int  # first sample of the syllable (its onset consonant)
    vowel_start: int
    vowel_end: int  # end of the vowel (the coda, if any, follows)
    end: int  # end of syllable including coda, before any pause


@dataclass(frozen=True)
class ClipTiming:
    """How long a clip is and where its speech and syllables fall, in samples."""

    total: int  # samples in the clip
    lead: int  # first sample of speech
    speech_len: int  # samples from the first syllable to the end of the last
    syllable_timings: list[SyllableTiming]


def clip_timing(
    spec: DemoCorpusSpec, syllables: tuple[Syllable, ...], cue: dict[str, float], rng: np.random.Generator
) -> ClipTiming:
    """Clip length varies +-10 %; speech length follows the speaking rate, its start is random.

    Args:
        spec: the corpus's spec (duration and sample rate).
        syllables: the statement's syllables.
        cue: the take's cue values, by name (its speaking rate).
        rng: the take's random stream.

    Returns:
        The clip's length, where its speech starts and lasts, and each syllable's timing.
    """
    sr = spec.sample_rate
    total = int(round(spec.duration * rng.uniform(0.9, 1.1) * sr))
    edge = int(min(0.15, 0.08 * spec.duration) * sr)  # silence kept before and after speech
    speech_len = int(min(_SPEECH_FRACTION * spec.duration * sr * 2.0 ** cue["rate"], total - 2 * edge))
    lead = edge + int((total - speech_len - 2 * edge) * rng.uniform(0.3, 0.6))
    timings = _syllable_timings(syllables, lead, speech_len, rng)
    return ClipTiming(total, lead, speech_len, timings)


def _syllable_timings(
    syllables: tuple[Syllable, ...], speech_start: int, speech_len: int, rng: np.random.Generator
) -> list[SyllableTiming]:
    lengths = np.array([s.length for s in syllables]) * rng.uniform(0.9, 1.1, len(syllables))
    pauses = np.array([s.pause_after for s in syllables]) * rng.uniform(0.7, 1.3, len(syllables))
    unit = speech_len / (lengths.sum() + pauses.sum())
    timings, cursor = [], float(speech_start)
    for syllable, length, pause in zip(syllables, lengths, pauses, strict=True):
        span = length * unit
        onset_fraction = ONSETS[syllable.onset][0]
        coda_fraction = 0.18 if syllable.coda else 0.0
        start = int(round(cursor))
        vowel_start = int(round(cursor + onset_fraction * span))
        vowel_end = int(round(cursor + (1.0 - coda_fraction) * span))
        end = int(round(cursor + span))
        timings.append(SyllableTiming(start, vowel_start, vowel_end, end))
        cursor += span + pause * unit
    return timings


def vowel_mask(clip: ClipTiming) -> np.ndarray:
    """True on the vowels' samples: the levels of consonants and of the take are set from them.

    Args:
        clip: the take's timing.

    Returns:
        A boolean mask `(clip.total,)`.
    """
    active = np.zeros(clip.total, dtype=bool)
    for timing in clip.syllable_timings:
        active[timing.vowel_start : timing.vowel_end] = True
    return active
