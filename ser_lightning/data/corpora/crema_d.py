"""CREMA-D: `AudioWAV/1001_DFA_ANG_XX.wav` = actor _ sentence _ emotion _ level.

91 actors (1001..1091), 12 sentences, 6 emotions (ANG, DIS, FEA, HAP, NEU, SAD) and an
emotion level: LO, MD, HI, or XX (unspecified; every sentence except IEO is recorded at XX).
Gender is not in the name; it comes from the corpus's own VideoDemographics.csv (below).
The raters' answers (finishedResponses.csv at the root, as the release has it) become the table's
vote columns when the file is there (data/votes.py; data.targets=soft).
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
from ser_lightning.data.votes import VOTE_COLUMNS, read_crema_d_votes, vote_row

CREMA_D_VOTES_FILE = "finishedResponses.csv"

CREMA_D_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")

# CREMA-D emotion codes onto ser_lightning.labels.EMOTIONS (CREMA-D has no calm or surprised).
CREMA_D_EMOTIONS: dict[str, str] = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMA_D_LEVELS: dict[str, str] = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
CREMA_D_SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
FIRST_ACTOR, LAST_ACTOR = 1001, 1091

# The "Sex" column of VideoDemographics.csv in the CREMA-D repository: the actors listed
# here are male, the other actors of 1001..1091 female (48 male, 43 female).
CREMA_D_MALE_ACTORS: frozenset[int] = frozenset(
    {
        1001, 1005, 1011, 1014, 1015, 1016, 1017, 1019, 1022, 1023, 1026, 1027, 1031, 1032,
        1033, 1034, 1035, 1036, 1038, 1039, 1040, 1041, 1042, 1044, 1045, 1048, 1050, 1051,
        1057, 1059, 1062, 1064, 1065, 1066, 1067, 1068, 1069, 1070, 1071, 1077, 1080, 1081,
        1083, 1085, 1086, 1087, 1088, 1090,
    }
)  # fmt: skip


class CremaDNameError(FileNameError):
    """A file name that does not follow the CREMA-D scheme; the message says which part is wrong."""


@dataclass(frozen=True)
class CremaDFields:
    """The parts of a CREMA-D file name: actor, sentence, emotion and level codes."""

    actor: str
    sentence: str
    emotion: str
    level: str

    @property
    def gender(self) -> str:
        """The actor's gender, from CREMA-D's demographics table."""
        return "male" if int(self.actor) in CREMA_D_MALE_ACTORS else "female"


def parse_crema_d_name(path: str | Path) -> CremaDFields:
    """Parse a CREMA-D file name such as `1001_DFA_ANG_XX.wav`.

    Args:
        path: the file (only its name is read).

    Returns:
        Its actor, sentence, emotion and level codes.

    Raises:
        CremaDNameError: when the name does not follow the scheme, has an unknown code, or an
            actor outside 1001..1091; the message says which part is wrong.
    """
    name = Path(path).name
    match = CREMA_D_NAME.match(Path(path).stem)
    if not match:
        raise CremaDNameError(
            f"name {name!r} does not follow the CREMA-D scheme ACTOR_SENTENCE_EMOTION_LEVEL "
            "(e.g. 1001_DFA_ANG_XX.wav)"
        )
    actor, sentence, emotion, level = match.groups()
    for part, code, valid in (
        ("sentence", sentence, CREMA_D_SENTENCES),
        ("emotion", emotion, CREMA_D_EMOTIONS),
        ("level", level, CREMA_D_LEVELS),
    ):
        if code not in valid:
            raise CremaDNameError(f"unknown {part} code {code!r} in {name!r} (valid: {', '.join(valid)})")
    if not FIRST_ACTOR <= int(actor) <= LAST_ACTOR:
        raise CremaDNameError(f"actor {actor} in {name!r} is outside CREMA-D's {FIRST_ACTOR}..{LAST_ACTOR}")
    return CremaDFields(actor, sentence, emotion, level)


@dataclass
class CremaDCorpus:
    """Scans a CREMA-D folder (AudioWAV, searched recursively) into the utterance table."""

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    name: str = "crema_d"

    def __post_init__(self) -> None:
        self.vocal_channels = check_speech_only("CREMA-D", self.vocal_channels)

    def scan(self) -> CorpusScan:
        """Read the folder's .wav files into the utterance table.

        Returns:
            The table and the rejected files (see `scan_speech_files`, which raises
            FileNotFoundError when the folder is missing or holds no usable file); with the
            vote columns when the root holds finishedResponses.csv (a clip it does not list gets
            no votes).
        """
        scan = scan_speech_files("CREMA-D", self.root, SOURCES["crema_d"].hint, self.name, self._describe)
        votes_file = Path(self.root) / CREMA_D_VOTES_FILE
        if votes_file.is_file():
            votes = read_crema_d_votes(votes_file)
            counts = [vote_row(votes.get(Path(path).stem, {})) for path in scan.table["path"]]
            for column in VOTE_COLUMNS:
                scan.table[column] = [float(row[column]) for row in counts]
        return scan

    @staticmethod
    def _describe(path: Path) -> tuple[tuple, dict]:
        fields = parse_crema_d_name(path)
        return (path.stem,), {
            "emotion": CREMA_D_EMOTIONS[fields.emotion],
            "actor": fields.actor,
            "gender": fields.gender,
            "intensity": CREMA_D_LEVELS[fields.level],
            "statement": fields.sentence,
        }
