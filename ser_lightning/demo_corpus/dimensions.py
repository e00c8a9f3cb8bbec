"""Arousal, valence and dominance of each demo file, computed from the synthesiser's design.

Nobody rated the demo corpus: its targets follow from what the synthesiser was told to do, so
they are documented, reproducible and learnable from the audio. For each file the cue vector
the take realised (`speakers.utterance_cues`, drawn from the file's own random stream exactly as
`synthesis` draws it) is taken relative to the speaker's habitual cues (`SpeakerProfile.baseline`),
which leaves the acted emotion (scaled by intensity and the actor's expressiveness, with the
actor's own way of acting it) plus the take-to-take variation. Then, each on the demo scale
1-5 (3 = the speaker's neutral; `ser_lightning.dimensions.CORPUS_SCALES["demo"]`):

- **arousal** = 3 + 2 tanh(mean(pitch / 4 st, loudness / 6 dB, -rate / 0.25, tilt / 2)):
  higher, louder, faster and brighter speech is more aroused;
- **valence** = 3 + 2 tanh(0.8 g x V[emotion] + smile / 0.04 x 0.25), where V is the table
  below (after the circumplex placements of Russell 1980), g the intensity gain (1, or 1.7
  strong) times the actor's expressiveness, and smile the realised lip-spreading cue;
- **dominance** = 3 + 2 tanh(mean(loudness / 6 dB, -slope / 3 st, articulation / 0.5,
  -breath / 0.15)): loud, falling, crisply articulated, pressed speech is more dominant.

The cue divisors are about one normal-intensity emotion's deviation, so tanh's argument stays
near [-1.5, 1.5]. A file's targets are a pure function of (spec, file name), as its audio is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from ser_lightning.demo_corpus.cues import CUE_INDEX, EMOTION_CUES, STRONG_INTENSITY_GAIN
from ser_lightning.demo_corpus.design import DemoCorpusSpec, DemoUtterance
from ser_lightning.demo_corpus.seeds import utterance_rng
from ser_lightning.demo_corpus.speakers import speaker_profile, utterance_cues
from ser_lightning.labels import RAVDESS_EMOTION_CODES

# Valence of each acted emotion at normal intensity, -1 (unpleasant) .. +1 (pleasant).
EMOTION_VALENCE: dict[str, float] = {
    "neutral": 0.0,
    "calm": 0.4,
    "happy": 0.9,
    "sad": -0.7,
    "angry": -0.7,
    "fearful": -0.6,
    "disgust": -0.8,
    "surprised": 0.3,
}
if set(EMOTION_VALENCE) != set(EMOTION_CUES):  # the same emotions as the cue table
    raise RuntimeError("the demo valence table must cover exactly the emotions of the cue table")


def utterance_of(path: str | Path) -> DemoUtterance:
    """The design entry of a demo file, from its RAVDESS name `03-01-EE-II-SS-RR-AA.wav`.

    Args:
        path: the file (its name is what counts).

    Returns:
        The utterance.

    Raises:
        ValueError: If the name is not a demo file name.
    """
    fields = Path(path).stem.split("-")
    if len(fields) != 7 or fields[2] not in RAVDESS_EMOTION_CODES:
        raise ValueError(f"{str(path)!r} is not a demo corpus file name (03-01-EE-II-SS-RR-AA.wav)")
    return DemoUtterance(int(fields[6]), RAVDESS_EMOTION_CODES[fields[2]], fields[3], fields[4], fields[5])


def _squash(value: float) -> float:
    return 3.0 + 2.0 * math.tanh(value)


def demo_dimensions(spec: DemoCorpusSpec, utterance: DemoUtterance) -> tuple[float, float, float]:
    """Arousal, valence and dominance (1-5) of one demo file, as the module docstring defines them.

    Args:
        spec: the corpus's spec.
        utterance: the file.

    Returns:
        `(arousal, valence, dominance)`, each in (1, 5).
    """
    speaker = speaker_profile(spec.seed, utterance.actor, spec.sample_rate)
    # the take's cues, from its own stream exactly as synthesize_utterance draws them first
    cues = utterance_cues(spec, utterance, utterance_rng(spec, utterance)) - speaker.baseline

    def cue(name: str) -> float:
        return float(cues[CUE_INDEX[name]])

    arousal = (cue("pitch") / 4.0 + cue("loudness") / 6.0 - cue("rate") / 0.25 + cue("tilt") / 2.0) / 4.0
    gain = (STRONG_INTENSITY_GAIN if utterance.intensity == "02" else 1.0) * speaker.expressiveness
    valence = 0.8 * gain * EMOTION_VALENCE[utterance.emotion] + 0.25 * cue("smile") / 0.04
    dominance = (
        cue("loudness") / 6.0 - cue("slope") / 3.0 + cue("articulation") / 0.5 - cue("breath") / 0.15
    ) / 4.0
    return _squash(arousal), _squash(valence), _squash(dominance)


def demo_dimensions_of(paths: Iterable[str | Path], spec: DemoCorpusSpec) -> list[tuple[float, float, float]]:
    """The targets of demo files by path, in order.

    Args:
        paths: the files (RAVDESS names).
        spec: the corpus's spec.

    Returns:
        One `(arousal, valence, dominance)` per path.
    """
    return [demo_dimensions(spec, utterance_of(path)) for path in paths]
