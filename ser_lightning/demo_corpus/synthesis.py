"""One file's audio: the synthesis stages run in order on the file's own random stream.

Every stage draws from the same generator, in the order below; reordering stages or draws
changes every file, and so needs a GENERATOR_VERSION bump.
"""

from __future__ import annotations

import numpy as np

from ser_lightning.demo_corpus.consonants import add_consonant_noise
from ser_lightning.demo_corpus.cues import CUES
from ser_lightning.demo_corpus.design import DemoCorpusSpec, DemoUtterance
from ser_lightning.demo_corpus.glottal_source import glottal_source
from ser_lightning.demo_corpus.phonetics import STATEMENTS
from ser_lightning.demo_corpus.prosody import pitch_track
from ser_lightning.demo_corpus.recording import record
from ser_lightning.demo_corpus.seeds import utterance_rng
from ser_lightning.demo_corpus.speakers import speaker_profile, utterance_cues
from ser_lightning.demo_corpus.timing import clip_timing, vowel_mask
from ser_lightning.demo_corpus.vocal_tract import articulate

# Bump whenever the audio a given spec produces changes, so that ensure_demo_corpus replaces
# corpora written by an older generator instead of silently mixing versions.
GENERATOR_VERSION = 1


def synthesize_utterance(spec: DemoCorpusSpec, utterance: DemoUtterance) -> np.ndarray:
    """Render one file's audio as float64 in [-1, 1]; deterministic in (spec, utterance).

    Args:
        spec: the corpus's spec.
        utterance: the file.

    Returns:
        The file's samples at `spec.sample_rate`.
    """
    rng = utterance_rng(spec, utterance)
    speaker = speaker_profile(spec.seed, utterance.actor, spec.sample_rate)
    cues = utterance_cues(spec, utterance, rng)
    cue = {name: float(cues[i]) for i, name in enumerate(CUES)}
    sr = spec.sample_rate
    syllables = STATEMENTS[utterance.statement]

    clip = clip_timing(spec, syllables, cue, rng)
    f0, creak = pitch_track(speaker, cue, syllables, clip, sr, rng)
    source = glottal_source(speaker, cue, f0, creak, sr, rng)
    voiced, noise_bursts = articulate(speaker, cue, syllables, clip, source, sr, rng)
    vowels = vowel_mask(clip)
    speech = add_consonant_noise(voiced, noise_bursts, vowels, sr, rng)
    return record(speech, speaker, cue, vowels, rng)
