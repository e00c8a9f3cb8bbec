"""The emotions, their RAVDESS codes and their index order: the one source of these facts.

Index order follows RAVDESS emotion codes 01..08 (neutral=0 ... surprised=7), the order the
earlier SER projects used, so confusion matrices and checkpoints line up across studies.
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

EMOTION_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(EMOTIONS)}

# RAVDESS file names carry the emotion as a two-digit code: "01" = neutral ... "08" = surprised.
RAVDESS_EMOTION_CODES: dict[str, str] = {f"{i + 1:02d}": name for i, name in enumerate(EMOTIONS)}
EMOTION_TO_RAVDESS_CODE: dict[str, str] = {name: code for code, name in RAVDESS_EMOTION_CODES.items()}


def emotion_index(name: str) -> int:
    """Index of an emotion name in EMOTIONS.

    Returns:
        The index, 0 (neutral) to 7 (surprised).

    Raises:
        KeyError: If the name is not one of EMOTIONS; the message lists the valid names.
    """
    try:
        return EMOTION_TO_INDEX[name]
    except KeyError:
        raise KeyError(f"unknown emotion {name!r}; known emotions: {', '.join(EMOTIONS)}") from None
