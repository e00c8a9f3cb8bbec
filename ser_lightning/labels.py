"""The emotions, their RAVDESS codes and their index order: the one source of these facts.

`EMOTIONS` are RAVDESS's eight, in its code order 01..08 (neutral=0 ... surprised=7), the order
the earlier SER projects used, so confusion matrices and checkpoints line up across studies;
`data.labels=all` means these eight. Other corpora name a few emotions RAVDESS does not
(MSP-Podcast contempt, EmoDB boredom, IEMOCAP excited and frustrated): `KNOWN_EMOTIONS` adds
them after the eight, and a run's labels always follow that order.
"""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)
NUM_EMOTIONS = len(EMOTIONS)
# Named by other corpora, not by RAVDESS.
OTHER_CORPUS_EMOTIONS: tuple[str, ...] = ("contempt", "boredom", "excited", "frustrated")
# Every emotion a corpus parser may name, in the order a run's label names follow.
KNOWN_EMOTIONS: tuple[str, ...] = EMOTIONS + OTHER_CORPUS_EMOTIONS

EMOTION_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(KNOWN_EMOTIONS)}


# RAVDESS file names carry the emotion as a two-digit code: "01" = neutral ... "08" = surprised.
RAVDESS_EMOTION_CODES: dict[str, str] = {f"{i + 1:02d}": name for i, name in enumerate(EMOTIONS)}
EMOTION_TO_RAVDESS_CODE: dict[str, str] = {name: code for code, name in RAVDESS_EMOTION_CODES.items()}


def emotion_index(name: str) -> int:
    """Index of an emotion name in KNOWN_EMOTIONS (RAVDESS's eight keep their codes' order).

    Returns:
        The index, 0 (neutral) to 7 (surprised), then 8 and up for the other corpora's emotions.

    Raises:
        KeyError: If the name is not one of KNOWN_EMOTIONS; the message lists the valid names.
    """
    try:
        return EMOTION_TO_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown emotion {name!r}; known emotions: {', '.join(KNOWN_EMOTIONS)}") from None
