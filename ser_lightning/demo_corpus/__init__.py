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

Modules, in the order a file is made:
- design: the spec and RAVDESS's actors, files and names; seeds: the random streams.
- cues, phonetics, speakers: what drives the synthesiser (emotion cues, the two statements'
  syllables, each actor's voice, room and acting style).
- synthesis runs the stages: timing, prosody (pitch track), glottal_source, vocal_tract and
  consonants (formants and noise), recording (room, microphone, level, noise floor).
- writer writes the files and the manifest (manifest.py); ensure stages and renames a corpus
  into place under a lock; __main__ is the command line.
"""

from ser_lightning.demo_corpus.cues import CUES, EMOTION_CUES, STRONG_INTENSITY_GAIN
from ser_lightning.demo_corpus.design import (
    MAX_ACTORS,
    DemoCorpusSpec,
    DemoUtterance,
    files_per_actor,
    iter_demo_utterances,
)
from ser_lightning.demo_corpus.ensure import ensure_demo_corpus
from ser_lightning.demo_corpus.manifest import MANIFEST_NAME, read_manifest
from ser_lightning.demo_corpus.speakers import SpeakerProfile, speaker_profile, utterance_cues
from ser_lightning.demo_corpus.synthesis import GENERATOR_VERSION, synthesize_utterance
from ser_lightning.demo_corpus.writer import generate_demo_corpus

__all__ = [
    "CUES",
    "EMOTION_CUES",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "MAX_ACTORS",
    "STRONG_INTENSITY_GAIN",
    "DemoCorpusSpec",
    "DemoUtterance",
    "SpeakerProfile",
    "ensure_demo_corpus",
    "files_per_actor",
    "generate_demo_corpus",
    "iter_demo_utterances",
    "read_manifest",
    "speaker_profile",
    "synthesize_utterance",
    "utterance_cues",
]
