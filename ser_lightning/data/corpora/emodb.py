"""EmoDB (Berlin Database of Emotional Speech): `wav/03a01Fa.wav` = speaker, text, emotion, version.

Ten actors (03, 08..16; five male, five female) speak ten German texts (a01 a02 a04 a05 a07
b01 b02 b03 b09 b10) in seven emotions, coded by the German word's first letter: W (Wut,
anger), L (Langeweile, boredom), E (Ekel, disgust), A (Angst, fear), F (Freude, happiness),
T (Trauer, sadness), N (neutral). The last letter tells takes of the same text and emotion
apart (a, b, c, ...). 535 files in the release; the gender comes from the corpus's own speaker
list (below), not from the name.
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

EMODB_NAME = re.compile(r"^(\d{2})([a-z]\d{2})([A-Z])([a-z])$")

# EmoDB's emotion letters (German words) onto ser_lightning.labels.KNOWN_EMOTIONS names.
EMODB_EMOTIONS: dict[str, str] = {
    "W": "angry",  # Wut / Ärger: anger
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fearful",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
# The speakers as the corpus documentation lists them (speaker code -> gender).
EMODB_SPEAKERS: dict[str, str] = {
    "03": "male",
    "08": "female",
    "09": "female",
    "10": "male",
    "11": "male",
    "12": "male",
    "13": "female",
    "14": "female",
    "15": "male",
    "16": "female",
}
EMODB_TEXTS: tuple[str, ...] = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")


class EmoDBNameError(FileNameError):
    """A file name that does not follow the EmoDB scheme; the message says which part is wrong."""


@dataclass(frozen=True)
class EmoDBFields:
    """The parts of an EmoDB file name: speaker, text, emotion letter and version letter."""

    speaker: str
    text: str
    emotion: str
    version: str

    @property
    def gender(self) -> str:
        """The speaker's gender, from EmoDB's speaker list."""
        return EMODB_SPEAKERS[self.speaker]


def parse_emodb_name(path: str | Path) -> EmoDBFields:
    """Parse an EmoDB file name such as `03a01Fa.wav`.

    Args:
        path: the file (only its name is read).

    Returns:
        Its speaker, text, emotion and version codes.

    Raises:
        EmoDBNameError: when the name does not follow the scheme or has an unknown speaker, text
            or emotion code; the message names the valid codes.
    """
    name = Path(path).name
    match = EMODB_NAME.match(Path(path).stem)
    if not match:
        raise EmoDBNameError(
            f"name {name!r} does not follow the EmoDB scheme SPEAKER TEXT EMOTION VERSION "
            "(two digits, a letter and two digits, an upper-case and a lower-case letter: e.g. 03a01Fa.wav)"
        )
    speaker, text, emotion, version = match.groups()
    for part, code, valid in (
        ("speaker", speaker, tuple(EMODB_SPEAKERS)),
        ("text", text, EMODB_TEXTS),
        ("emotion", emotion, tuple(EMODB_EMOTIONS)),
    ):
        if code not in valid:
            raise EmoDBNameError(f"unknown {part} code {code!r} in {name!r} (valid: {', '.join(valid)})")
    return EmoDBFields(speaker, text, emotion, version)


@dataclass
class EmoDBCorpus:
    """Scans an EmoDB folder (its `wav/` folder, searched recursively) into the utterance table."""

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    name: str = "emodb"

    def __post_init__(self) -> None:
        self.vocal_channels = check_speech_only("EmoDB", self.vocal_channels)

    def scan(self) -> CorpusScan:
        """Read the folder's .wav files into the utterance table.

        Returns:
            The table and the rejected files (see `scan_speech_files`, which raises
            FileNotFoundError when the folder is missing or holds no usable file).
        """
        return scan_speech_files("EmoDB", self.root, SOURCES["emodb"].hint, self.name, self._describe)

    @staticmethod
    def _describe(path: Path) -> tuple[tuple, dict]:
        fields = parse_emodb_name(path)
        return (path.stem,), {
            "emotion": EMODB_EMOTIONS[fields.emotion],
            "actor": fields.speaker,
            "gender": fields.gender,
            "intensity": "unspecified",
            "statement": fields.text,
        }
