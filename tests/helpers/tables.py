"""Utterance tables without audio files, for the split and protocol tests."""

from __future__ import annotations

import pandas as pd

from ser_lightning.data.utterances import make_table
from ser_lightning.labels import EMOTIONS


def ravdess_like_table(num_actors: int = 24) -> pd.DataFrame:
    """The full RAVDESS speech design: 60 files per actor, 96 neutral and 192 of each other emotion."""
    rows = []
    for actor in range(1, num_actors + 1):
        for emotion in EMOTIONS:
            for intensity in ["normal"] if emotion == "neutral" else ["normal", "strong"]:
                for statement in ("kids", "dogs"):
                    for rep in (1, 2):
                        rows.append(
                            {
                                "path": f"/c/Actor_{actor:02d}/{emotion}-{intensity}-{statement}-{rep}.wav",
                                "emotion": emotion,
                                "actor": f"{actor:02d}",
                                "gender": "male" if actor % 2 else "female",
                                "intensity": intensity,
                                "statement": statement,
                                "vocal_channel": "speech",
                                "corpus": "ravdess",
                            }
                        )
    return make_table(rows)
