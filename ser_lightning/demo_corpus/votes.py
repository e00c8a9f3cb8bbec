"""Simulated annotator votes of each demo file, from the synthesiser's design.

Nobody listened to the demo corpus: these votes are simulated, documented and reproducible, so
that data.targets=soft runs offline and its reports say something measurable. Each file gets
`DEMO_RATERS` raters. A rater hears the cues the take realised relative to the speaker's habitual
cues (as `dimensions.demo_dimensions` reads them) and compares them with each emotion's cue
prototype (`cues.EMOTION_CUES`, scaled by the take's intensity gain), every cue measured in units
of its spread across the prototypes. The rater answers emotion e with probability
softmax(-distance(e)^2 / DEMO_RATER_TEMPERATURE): emotions the synthesiser makes acoustically
close (calm and neutral, angry and disgust, fearful and surprised) are confused, takes that
realise their emotion clearly get near-unanimous votes. The draws come from the file's own
stream (seeded by its RAVDESS fields and `_VOTE_STREAM`), separate from its audio's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ser_lightning.demo_corpus.cues import EMOTION_CUES, STRONG_INTENSITY_GAIN
from ser_lightning.demo_corpus.design import DemoCorpusSpec, DemoUtterance
from ser_lightning.demo_corpus.dimensions import utterance_of
from ser_lightning.demo_corpus.seeds import utterance_rng
from ser_lightning.demo_corpus.speakers import speaker_profile, utterance_cues

DEMO_RATERS = 6
DEMO_RATER_TEMPERATURE = 4.0
_VOTE_STREAM = 17  # the raters' stream, apart from the audio's (seeds._UTTERANCE_STREAM)

_PROTOTYPES = np.stack(list(EMOTION_CUES.values()))
_NAMES = tuple(EMOTION_CUES)
# a cue's unit: its spread across the emotion prototypes (cues no emotion moves count for nothing)
_SPREAD = _PROTOTYPES.std(axis=0)
_WEIGHT = np.where(_SPREAD > 0, 1.0 / np.where(_SPREAD > 0, _SPREAD, 1.0), 0.0)


def demo_vote_probabilities(spec: DemoCorpusSpec, utterance: DemoUtterance) -> np.ndarray:
    """The probability that a simulated rater answers each emotion for one demo file.

    Args:
        spec: the corpus's spec.
        utterance: the file.

    Returns:
        One probability per emotion of `cues.EMOTION_CUES` (labels.EMOTIONS order), summing to 1.
    """
    speaker = speaker_profile(spec.seed, utterance.actor, spec.sample_rate)
    cues = utterance_cues(spec, utterance, utterance_rng(spec, utterance)) - speaker.baseline
    gain = (STRONG_INTENSITY_GAIN if utterance.intensity == "02" else 1.0) * speaker.expressiveness
    distance = (((cues[None, :] - gain * _PROTOTYPES) * _WEIGHT) ** 2).sum(axis=1)
    logits = -distance / DEMO_RATER_TEMPERATURE
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def demo_votes(spec: DemoCorpusSpec, utterance: DemoUtterance) -> Counter:
    """The simulated raters' answers for one demo file.

    Args:
        spec: the corpus's spec.
        utterance: the file.

    Returns:
        Counter of emotion names, DEMO_RATERS votes in all.
    """
    rng = np.random.default_rng(
        [
            spec.seed,
            _VOTE_STREAM,
            utterance.actor,
            int(utterance.emotion_code),
            int(utterance.intensity),
            int(utterance.statement),
            int(utterance.repetition),
        ]
    )
    answers = rng.choice(len(_NAMES), size=DEMO_RATERS, p=demo_vote_probabilities(spec, utterance))
    return Counter(_NAMES[int(i)] for i in answers)


def demo_votes_of(paths: Iterable[str | Path], spec: DemoCorpusSpec) -> list[Counter]:
    """The simulated votes of demo files by path, in order.

    Args:
        paths: the files (RAVDESS names).
        spec: the corpus's spec.

    Returns:
        One Counter per path.
    """
    return [demo_votes(spec, utterance_of(Path(path))) for path in paths]
