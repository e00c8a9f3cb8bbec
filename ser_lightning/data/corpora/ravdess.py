"""RAVDESS: `Actor_XX/MM-VV-EE-II-SS-RR-AA.wav`, seven two-digit fields.

Fields: modality (01 audio-video, 02 video-only, 03 audio-only), vocal channel (01 speech,
02 song), emotion (01..08), intensity (01 normal, 02 strong; neutral has no strong),
statement (01 "Kids are talking by the door", 02 "Dogs are sitting by the door"),
repetition (01, 02), actor (01..24; odd actors are male, even female).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ser_lightning.data.corpora.common import FileScreen, find_audio_files
from ser_lightning.data.utterances import CorpusScan, RejectedFile, make_table
from ser_lightning.labels import RAVDESS_EMOTION_CODES
from ser_lightning.utils.errors import InvalidSetting, UserError

RAVDESS_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
ACTOR_FOLDER = re.compile(r"^Actor_(\d{2})$")

MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
INTENSITIES = {"01": "normal", "02": "strong"}
STATEMENTS = {"01": "kids", "02": "dogs"}
REPETITIONS = {"01": "1", "02": "2"}

AUDIO_EXTENSIONS = (".wav",)

RAVDESS_HELP = (
    "RAVDESS speech audio is the archive 'Audio_Speech_Actors_01-24.zip' of Zenodo record 1188976 "
    "(https://zenodo.org/records/1188976): `python -m ser_lightning.data.download ravdess` fetches and "
    "unpacks it where data=ravdess looks, or unpack it yourself and pass its folder as data.root=PATH. "
    "To work offline, use the built-in synthetic corpus: data=demo."
)


class RavdessNameError(UserError, ValueError):
    """A file name that does not follow the RAVDESS scheme; the message says which field is wrong."""


@dataclass(frozen=True)
class RavdessFields:
    """The seven two-digit fields of a RAVDESS file name, as codes."""

    modality: str
    vocal_channel: str
    emotion: str
    intensity: str
    statement: str
    repetition: str
    actor: str

    @property
    def gender(self) -> str:
        """The actor's gender: RAVDESS's odd-numbered actors are male, even-numbered female."""
        return "male" if int(self.actor) % 2 == 1 else "female"


def parse_ravdess_name(path: str | Path) -> RavdessFields:
    """Parse a RAVDESS file name (`MM-VV-EE-II-SS-RR-AA`) into its fields.

    Args:
        path: the file (only its name is read).

    Returns:
        The name's fields, as codes.

    Raises:
        RavdessNameError: when the name does not follow the scheme, has an unknown code or an
            actor below 01, or says strong intensity for neutral; the message says which field.
    """
    stem = Path(path).stem
    match = RAVDESS_NAME.match(stem)
    if not match:
        raise RavdessNameError(
            f"name {Path(path).name!r} does not follow the RAVDESS scheme MM-VV-EE-II-SS-RR-AA "
            "(seven two-digit fields)"
        )
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    checks = (
        ("modality", modality, MODALITIES),
        ("vocal channel", channel, VOCAL_CHANNELS),
        ("emotion", emotion, RAVDESS_EMOTION_CODES),
        ("intensity", intensity, INTENSITIES),
        ("statement", statement, STATEMENTS),
        ("repetition", repetition, REPETITIONS),
    )
    for field_name, code, valid in checks:
        if code not in valid:
            raise RavdessNameError(
                f"unknown {field_name} code {code!r} in {Path(path).name!r} (valid: {', '.join(valid)})"
            )
    if int(actor) < 1:
        raise RavdessNameError(f"actor code {actor!r} in {Path(path).name!r} must be 01 or higher")
    if RAVDESS_EMOTION_CODES[emotion] == "neutral" and intensity == "02":
        raise RavdessNameError(
            f"{Path(path).name!r} says strong intensity for neutral, which RAVDESS does not record"
        )
    return RavdessFields(modality, channel, emotion, intensity, statement, repetition, actor)


@dataclass
class RavdessCorpus:
    """Scans a RAVDESS folder (searched recursively) into the utterance table.

    vocal_channels: which of "speech" / "song" to keep; other valid files are counted as
    excluded, never silently mixed in.
    """

    root: str
    vocal_channels: tuple[str, ...] = ("speech",)
    name: str = "ravdess"

    def __post_init__(self) -> None:
        self.vocal_channels = tuple(self.vocal_channels)
        unknown = set(self.vocal_channels) - set(VOCAL_CHANNELS.values())
        if unknown or not self.vocal_channels:
            raise InvalidSetting(
                f"data.corpus.vocal_channels={list(self.vocal_channels)} is not valid; "
                f"choose from {sorted(VOCAL_CHANNELS.values())}"
            )

    def scan(self) -> CorpusScan:
        """Read the folder's audio files into the utterance table.

        Files whose names or folders are wrong, that are not audio-only, unusable or second
        copies are rejected with the reason; valid files of other vocal channels are counted as
        excluded.

        Returns:
            The table, the rejected files and the number excluded by `vocal_channels`.

        Raises:
            FileNotFoundError: when the folder does not exist, holds no audio files, or no usable one.
        """
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"RAVDESS folder {str(root)!r} does not exist. {RAVDESS_HELP}")
        files = find_audio_files(root, AUDIO_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"RAVDESS folder {str(root)!r} holds no .wav files. {RAVDESS_HELP}")
        rows, rejected, excluded, screen = [], [], 0, FileScreen()
        for path in files:
            try:
                fields = parse_ravdess_name(path)
            except RavdessNameError as err:
                rejected.append(RejectedFile(str(path), str(err)))
                continue
            folder = ACTOR_FOLDER.match(path.parent.name)
            if folder and folder.group(1) != fields.actor:
                rejected.append(
                    RejectedFile(
                        str(path),
                        f"file says actor {fields.actor} but lies in folder {path.parent.name}; "
                        "move it to the right Actor_XX folder or fix its name",
                    )
                )
                continue
            if fields.modality != "03":
                rejected.append(
                    RejectedFile(
                        str(path),
                        f"modality {fields.modality} ({MODALITIES[fields.modality]}) is not audio-only",
                    )
                )
                continue
            channel = VOCAL_CHANNELS[fields.vocal_channel]
            if channel not in self.vocal_channels:
                excluded += 1
                continue
            problem = screen.check(path, (path.stem,))
            if problem:
                rejected.append(problem)
                continue
            rows.append(
                {
                    "path": str(path.resolve()),
                    "emotion": RAVDESS_EMOTION_CODES[fields.emotion],
                    "actor": fields.actor,
                    "gender": fields.gender,
                    "intensity": INTENSITIES[fields.intensity],
                    "statement": STATEMENTS[fields.statement],
                    "vocal_channel": channel,
                    "corpus": self.name,
                }
            )
        if not rows:
            raise FileNotFoundError(
                f"no usable RAVDESS files under {str(root)!r} ({len(rejected)} rejected, "
                f"{excluded} excluded by vocal_channels={list(self.vocal_channels)}). {RAVDESS_HELP}"
            )
        return CorpusScan(make_table(rows), rejected, excluded)
