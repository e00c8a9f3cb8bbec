"""Vocal-tract stage: the source shaped syllable by syllable by formant filters.

The filters glide between vowel targets; the consonant noise each syllable calls for is planned
alongside.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from ser_lightning.demo_corpus.consonants import NoiseBurst
from ser_lightning.demo_corpus.envelope import raised_cosine_envelope
from ser_lightning.demo_corpus.phonetics import NEUTRAL_VOWEL, ONSETS, VOWEL_FORMANTS, Syllable
from ser_lightning.demo_corpus.speakers import SpeakerProfile
from ser_lightning.demo_corpus.timing import ClipTiming


def _vocal_tract_sos(formants: np.ndarray, sample_rate: int, scale: float) -> np.ndarray:
    """Cascade of unity-DC-gain two-pole resonators: F1-F3 of the vowel plus fixed F4/F5.

    Returns:
        The resonators' second-order sections (those below 0.45 of the sample rate).
    """
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


def articulate(
    speaker: SpeakerProfile,
    cue: dict[str, float],
    syllables: tuple[Syllable, ...],
    clip: ClipTiming,
    source: np.ndarray,
    sr: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[NoiseBurst]]:
    """The voiced signal and the noise bursts its consonants need.

    The voiced signal holds the vowels and the voicing through voiced consonants; the bursts'
    levels are relative to the vowels.

    Args:
        speaker: the actor's voice (formants).
        cue: the take's cue values, by name.
        syllables: the statement's syllables.
        clip: the take's timing.
        source: the glottal source (`glottal_source`).
        sr: the sample rate.
        rng: the take's random stream.

    Returns:
        The voiced signal `(clip.total,)` and the consonants' noise bursts.
    """
    total = clip.total
    formant_scale = speaker.formant_scale * (1.0 + cue["smile"]) * np.array(speaker.formant_quirks)
    expansion = 1.0 + 0.25 * cue["articulation"]
    arousal_f1 = 1.0 + 0.012 * cue["loudness"]  # louder speech opens the jaw: higher F1

    def vowel_formants(name: str) -> np.ndarray:
        target = np.array(VOWEL_FORMANTS[name])
        target = NEUTRAL_VOWEL + expansion * (target - NEUTRAL_VOWEL)
        target = target * rng.normal(1.0, 0.03, 3)
        target[0] *= arousal_f1
        return target * formant_scale

    voiced = np.zeros(total)
    noise_bursts = []
    ring = int(0.03 * sr)
    previous_end = vowel_formants("@")
    stress_db = rng.normal(0.0, 1.2, len(syllables)) - 3.0 * np.linspace(0.0, 1.0, len(syllables))
    for syllable, timing, level_db in zip(syllables, clip.syllable_timings, stress_db, strict=True):
        amplitude = 10.0 ** ((level_db - (0.0 if syllable.stressed else 3.0)) / 20.0)
        start_target = vowel_formants(syllable.vowel_start)
        end_target = (
            vowel_formants(syllable.vowel_end) if syllable.vowel_end != syllable.vowel_start else start_target
        )
        start_formants = 0.75 * start_target + 0.25 * previous_end  # coarticulation
        previous_end = end_target
        _, closure, band, noise_level, voice_bar = ONSETS[syllable.onset]
        span = timing.end - timing.start
        vowel_len = timing.vowel_end - timing.vowel_start
        envelope = np.zeros(timing.end - timing.start)
        vowel_offset = timing.vowel_start - timing.start
        envelope[vowel_offset : vowel_offset + vowel_len] = raised_cosine_envelope(
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
                NoiseBurst(burst_start, burst_len, band, noise_level * amplitude, syllable.onset == "s")
            )
        if syllable.coda:
            coda_len = timing.end - timing.vowel_end
            noise_bursts.append(
                NoiseBurst(timing.vowel_end, coda_len, (3500.0, 7000.0), 0.12 * amplitude, True)
            )
    return voiced, noise_bursts
