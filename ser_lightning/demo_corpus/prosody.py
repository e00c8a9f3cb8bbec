"""Prosody stage: the pitch (f0) track of a take, from its intonation contour and creak."""

from __future__ import annotations

import numpy as np

from ser_lightning.demo_corpus.envelope import raised_cosine_envelope
from ser_lightning.demo_corpus.phonetics import Syllable
from ser_lightning.demo_corpus.speakers import SpeakerProfile
from ser_lightning.demo_corpus.timing import ClipTiming


def pitch_track(
    speaker: SpeakerProfile,
    cue: dict[str, float],
    syllables: tuple[Syllable, ...],
    clip: ClipTiming,
    sr: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """f0 in Hz per sample, and the creak envelope (0..1) that lowered it: the source needs both.

    Args:
        speaker: the actor's voice.
        cue: the take's cue values, by name.
        syllables: the statement's syllables.
        clip: the take's timing.
        sr: the sample rate.
        rng: the take's random stream.

    Returns:
        The f0 `(clip.total,)` and the creak envelope `(clip.total,)`.
    """
    semitones = _intonation(speaker, cue, syllables, clip, sr, rng)
    creak = _creak(cue, clip, rng)
    f0 = speaker.f0_hz * 2.0 ** (semitones / 12.0) * (1.0 - 0.45 * creak)
    f0 = np.clip(f0, 45.0, 0.2 * sr)
    return f0, creak


def _intonation(
    speaker: SpeakerProfile,
    cue: dict[str, float],
    syllables: tuple[Syllable, ...],
    clip: ClipTiming,
    sr: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Semitones from the speaker's f0: level + slope + declination + pitch accents + drift + tremor.

    Returns:
        The offset in semitones per sample.
    """
    total, lead, speech_len = clip.total, clip.lead, clip.speech_len
    t = np.arange(total) / sr
    progress = np.clip((np.arange(total) - lead) / max(speech_len, 1), 0.0, 1.0)
    range_factor = 2.0 ** cue["range"]
    # Accents rise above a baseline; lowering that baseline by half a neutral accent keeps the
    # speaker's habitual f0 (f0_hz) at the median of a neutral take.
    semitones = (
        cue["pitch"] - 0.5 * speaker.accent_size + (cue["slope"] + speaker.declination) * (progress - 0.5)
    )
    centres = np.array([(s.vowel_start + s.vowel_end) / 2 for s in clip.syllable_timings]) / sr
    widths = np.array([max(s.vowel_end - s.vowel_start, 1) for s in clip.syllable_timings]) / sr * 0.45
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
    return semitones


def _creak(cue: dict[str, float], clip: ClipTiming, rng: np.random.Generator) -> np.ndarray:
    """Some syllables (more often the last) fall into low, irregular vocal fry: 0..1 per sample.

    Returns:
        The creak envelope per sample.
    """
    creak = np.zeros(clip.total)
    timings = clip.syllable_timings
    for index, timing in enumerate(timings):
        probability = cue["creak"] * (2.0 if index == len(timings) - 1 else 1.0)
        if rng.uniform() < probability:
            onset = timing.vowel_start + int(0.35 * (timing.vowel_end - timing.vowel_start))
            length = timing.end - onset
            creak[onset : timing.end] = raised_cosine_envelope(length, length // 3, length // 5)
    return creak
