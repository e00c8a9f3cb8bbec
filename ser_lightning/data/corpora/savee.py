"""SAVEE: `DC_a01.wav` = speaker _ emotion code + sentence number (or `DC/a01.wav`).

Four male speakers (DC, JE, JK, KL), 7 emotion codes: a (anger), d (disgust), f (fear),
h (happiness), n (neutral), sa (sadness), su (surprise). Each speaker reads 15 sentences per
emotion (01..15) and 30 neutral ones (n01..n30): 120 files per speaker, 480 in all. The
original archive keeps one folder per speaker with names like `a01.wav`; copies that
flatten it prefix the speaker (`DC_a01.wav`). Both are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ser_lightning.data.corpora.common import (
    FileNameError,
    check_speech_only,
    scan_speech_files,
)
from ser_lightning.data.corpora.sources import SOURCES
from ser_lightning.data.utterances import CorpusScan

SAVEE_FLAT_NAME = re.compile(r"^([A-Za-z]{2})_([a-z]{1,2})(\d{2})$")
SAVEE_FOLDER_NAME = re.compile(r"^([a-z]{1,2})(\d{2})$")
SAVEE_SPEAKERS: tuple[str, ...] = ("DC", "JE", "JK", "KL")

# SAVEE emotion codes onto ser_lightning.labels.EMOTIONS (SAVEE has no calm).
SAVEE_EMOTIONS: dict[str, str] = {
    "a": "angry",
    "d": "disgust",
    "f": "fearful",
    "h": "happy",
    "n": "neutral",
    "sa": "sad",
    "su": "surprised",
}
SENTENCES_PER_EMOTION = {code: 30 if code == "n" else 15 for code in SAVEE_EMOTIONS}


class SaveeNameError(FileNameError):
    """A file name that does not follow the SAVEE scheme; the message says what is wrong."""


@dataclass(frozen=True)
class SaveeFields:
    """The parts of a SAVEE file name: speaker, emotion code and sentence number."""

    speaker: str
    code: str  # emotion code, e.g. "sa"
    number: int  # sentence number within the emotion

    @property
    def sentence(self) -> str:
        """The sentence's id within the corpus: emotion code and two-digit number, e.g. `sa01`."""
        return f"{self.code}{self.number:02d}"


def parse_savee_name(path: str | Path) -> SaveeFields:
    """Parse a SAVEE file name: `DC_a01.wav`, or `a01.wav` inside a speaker folder `DC/`.

    Args:
        path: the file (its name, and its folder's name for the second form).

    Returns:
        Its speaker, emotion code and sentence number.

    Raises:
        SaveeNameError: when the name follows neither form, or has an unknown speaker or emotion
            code, or a sentence number outside the emotion's range.
    """
    path = Path(path)
    flat = SAVEE_FLAT_NAME.match(path.stem)
    in_folder = SAVEE_FOLDER_NAME.match(path.stem)
    if flat:
        speaker, code, number = flat.group(1), flat.group(2), flat.group(3)
    elif in_folder and path.parent.name in SAVEE_SPEAKERS:
        speaker, (code, number) = path.parent.name, in_folder.groups()
    else:
        raise SaveeNameError(
            f"name {path.name!r} does not follow the SAVEE scheme SPEAKER_CODENN (e.g. DC_a01.wav) "
            "nor CODENN inside a speaker folder (e.g. DC/a01.wav)"
        )
    if speaker not in SAVEE_SPEAKERS:
        raise SaveeNameError(
            f"unknown speaker {speaker!r} in {path.name!r} (valid: {', '.join(SAVEE_SPEAKERS)})"
        )
    if code not in SAVEE_EMOTIONS:
        raise SaveeNameError(
            f"unknown emotion code {code!r} in {path.name!r} (valid: {', '.join(SAVEE_EMOTIONS)})"
        )
    if not 1 <= int(number) <= SENTENCES_PER_EMOTION[code]:
        raise SaveeNameError(
            f"sentence number {number} in {path.name!r} is outside 01..{SENTENCES_PER_EMOTION[code]:02d} "
            f"for emotion code {code!r}"
        )
    return SaveeFields(speaker, code, int(number))


@dataclass
class SaveeCorpus:
    """Scans a SAVEE folder (searched recursively) into the utterance table."""

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    name: str = "savee"

    def __post_init__(self) -> None:
        self.vocal_channels = check_speech_only("SAVEE", self.vocal_channels)

    def scan(self) -> CorpusScan:
        """Read the folder's .wav files into the utterance table.

        Returns:
            The table and the rejected files (see `scan_speech_files`, which raises
            FileNotFoundError when the folder is missing or holds no usable file).
        """
        return scan_speech_files("SAVEE", self.root, SOURCES["savee"].hint, self.name, self._describe)

    @staticmethod
    def _describe(path: Path) -> tuple[tuple, dict]:
        fields = parse_savee_name(path)
        return (fields.speaker, fields.sentence), {
            "emotion": SAVEE_EMOTIONS[fields.code],
            "actor": fields.speaker,
            "gender": "male",
            "intensity": "unspecified",
            "statement": fields.sentence,
        }
