"""The random streams of the demo corpus.

Every file is a pure function of (spec, file name fields): its random numbers come from a
generator seeded by those fields, so files are reproducible one by one, in any order.
"""

from __future__ import annotations

import numpy as np

from ser_lightning.demo_corpus.design import DemoCorpusSpec, DemoUtterance

# Seed-stream tags keep the random numbers of speakers and of utterances independent.
_SPEAKER_STREAM = 1
_UTTERANCE_STREAM = 2


def speaker_rng(seed: int, actor: int) -> np.random.Generator:
    """An actor's own stream: a speaker never depends on which other actors are generated.

    Args:
        seed: the corpus's seed.
        actor: the actor's number.

    Returns:
        The actor's random generator.
    """
    return np.random.default_rng([seed, _SPEAKER_STREAM, actor])


def utterance_rng(spec: DemoCorpusSpec, utterance: DemoUtterance) -> np.random.Generator:
    """One file's stream, seeded by its RAVDESS fields so that it can be rendered alone.

    Args:
        spec: the corpus's spec (its seed).
        utterance: the file.

    Returns:
        The file's random generator.
    """
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
