"""TESS: `OAF_angry/OAF_back_angry.wav` = speaker _ word _ emotion, in per-emotion folders.

Two female speakers, OAF (older adult, 64) and YAF (young adult, 26), 200 words each in 7
emotions: angry, disgust, fear, happy, neutral, ps (pleasant surprise), sad. Folder names
vary between copies (OAF_Fear, OAF_Pleasant_surprise, YAF_pleasant_surprised ...); when a
folder is named SPEAKER_EMOTION it must agree with the file name, so a file moved into the
wrong folder is reported rather than trusted.
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

TESS_NAME = re.compile(r"^([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)$")
TESS_FOLDER = re.compile(r"^(OAF|YAF)_(.+)$", re.IGNORECASE)
TESS_SPEAKERS: dict[str, str] = {"OAF": "older adult female", "YAF": "young adult female"}

# TESS emotion words onto ser_lightning.labels.EMOTIONS ("ps" is pleasant surprise; no calm).
TESS_EMOTIONS: dict[str, str] = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "neutral": "neutral",
    "ps": "surprised",
    "sad": "sad",
}
# Folder spellings seen in copies of TESS, onto the file-name emotion words.
_FOLDER_EMOTIONS = {**{e: e for e in TESS_EMOTIONS}, "pleasant_surprise": "ps", "pleasant_surprised": "ps"}


class TessNameError(FileNameError):
    """A file name that does not follow the TESS scheme; the message says what is wrong."""


@dataclass(frozen=True)
class TessFields:
    """The parts of a TESS file name: speaker, word and emotion word."""

    speaker: str
    word: str
    emotion: str  # the TESS emotion word, e.g. "ps"


def parse_tess_name(path: str | Path) -> TessFields:
    """Parse a TESS file name such as `OAF_back_angry.wav`.

    Args:
        path: the file (only its name is read).

    Returns:
        Its speaker (upper case), word and emotion word (lower case).

    Raises:
        TessNameError: when the name does not follow the scheme or has an unknown speaker or
            emotion; the message says what is wrong.
    """
    name = Path(path).name
    match = TESS_NAME.match(Path(path).stem)
    if not match:
        raise TessNameError(
            f"name {name!r} does not follow the TESS scheme SPEAKER_WORD_EMOTION (e.g. OAF_back_angry.wav)"
        )
    speaker, word, emotion = match.group(1).upper(), match.group(2).lower(), match.group(3).lower()
    if speaker not in TESS_SPEAKERS:
        raise TessNameError(
            f"unknown speaker {match.group(1)!r} in {name!r} (valid: OAF, YAF); rename the file if "
            "it belongs to one of them"
        )
    if emotion not in TESS_EMOTIONS:
        raise TessNameError(
            f"unknown emotion {match.group(3)!r} in {name!r} (valid: {', '.join(TESS_EMOTIONS)})"
        )
    return TessFields(speaker, word, emotion)


def _folder_disagreement(path: Path, fields: TessFields) -> str | None:
    folder = TESS_FOLDER.match(path.parent.name)
    if not folder:
        return None
    speaker, emotion = folder.group(1).upper(), _FOLDER_EMOTIONS.get(folder.group(2).lower())
    if speaker != fields.speaker or (emotion is not None and emotion != fields.emotion):
        return (
            f"file says {fields.speaker} {fields.emotion} but lies in folder {path.parent.name}; "
            "move it to the matching folder or fix its name"
        )
    return None


@dataclass
class TessCorpus:
    """Scans a TESS folder (searched recursively) into the utterance table."""

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    name: str = "tess"

    def __post_init__(self) -> None:
        self.vocal_channels = check_speech_only("TESS", self.vocal_channels)

    def scan(self) -> CorpusScan:
        """Read the folder's .wav files into the utterance table.

        A file whose speaker or emotion disagrees with its folder's name is rejected.

        Returns:
            The table and the rejected files (see `scan_speech_files`, which raises
            FileNotFoundError when the folder is missing or holds no usable file).
        """
        return scan_speech_files("TESS", self.root, SOURCES["tess"].hint, self.name, self._describe)

    @staticmethod
    def _describe(path: Path) -> tuple[tuple, dict]:
        fields = parse_tess_name(path)
        problem = _folder_disagreement(path, fields)
        if problem:
            raise TessNameError(problem)
        return (fields.speaker, fields.word, fields.emotion), {
            "emotion": TESS_EMOTIONS[fields.emotion],
            "actor": fields.speaker,
            "gender": "female",
            "intensity": "unspecified",
            "statement": fields.word,
        }
