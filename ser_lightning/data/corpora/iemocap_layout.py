"""Where IEMOCAP keeps its files and how it names them: session folders and utterance ids.

An utterance id is session (`Ses01`), the gender of the actor wearing the markers (`F`), the
scenario (`impro01`, `script01_1`, `script01_1b`), then the speaker's gender and turn (`F000`):
`Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav`, labelled in
`Session1/dialog/EmoEvaluation/Ses01F_impro01.txt`. Paths are only ever made of ids that match
the scheme, so nothing read from a label file can point outside data.root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ser_lightning.data.corpora.common import FileNameError
from ser_lightning.data.utterances import RejectedFile

UTTERANCE_ID = re.compile(
    r"^Ses(?P<session>0[1-5])(?P<wearer>[MF])_(?P<scenario>(?P<kind>impro|script)[0-9A-Za-z_]*?)"
    r"_(?P<gender>[MF])(?P<turn>[0-9A-Za-z]+)$"
)
SESSION_FOLDER = re.compile(r"^Session([1-5])$")
GENDERS = {"M": "male", "F": "female"}
KINDS = {"impro": "improvised", "script": "scripted"}
LAYOUT = (
    "IEMOCAP's layout is IEMOCAP_full_release/Session1..Session5, each holding "
    "sentences/wav/<dialog>/<utterance>.wav and dialog/EmoEvaluation/<dialog>.txt; "
    "set data.root to IEMOCAP_full_release (or a folder holding it)."
)


class IemocapIdError(FileNameError):
    """An utterance id (or file name) that does not follow IEMOCAP's scheme."""


@dataclass(frozen=True)
class UtteranceId:
    """The parts of an IEMOCAP utterance id such as `Ses01F_impro01_M003`.

    Attributes:
        utterance: the id.
        session: 1..5.
        dialog: the dialog (`Ses01F_impro01`): its audio folder and EmoEvaluation file's name.
        scenario: `impro01`, `script01_1`, ...
        kind: `improvised` or `scripted`.
        gender: the speaker's gender, `male` or `female`.
        speaker: the speaker: session and gender letter, e.g. `Ses01M`.
    """

    utterance: str
    session: int
    dialog: str
    scenario: str
    kind: str
    gender: str
    speaker: str


def parse_utterance_id(name: str) -> UtteranceId:
    """Parse an IEMOCAP utterance id (a file stem or an EmoEvaluation turn name).

    Args:
        name: the id, e.g. `Ses01F_impro01_M003`.

    Returns:
        Its parts; the speaker is the utterance's own (`Ses01M` for `..._M003`).

    Raises:
        IemocapIdError: when the id does not follow the scheme.
    """
    match = UTTERANCE_ID.match(name)
    if match is None:
        raise IemocapIdError(
            f"{name!r} is not an IEMOCAP utterance id SesNN<F|M>_<impro|script>..._<F|M>NNN "
            "(e.g. Ses01F_impro01_F000)"
        )
    session, letter = match["session"], match["gender"]
    return UtteranceId(
        utterance=name,
        session=int(session),
        dialog=name.rsplit("_", 1)[0],
        scenario=match["scenario"],
        kind=KINDS[match["kind"]],
        gender=GENDERS[letter],
        speaker=f"Ses{session}{letter}",
    )


def find_sessions(root: Path) -> tuple[dict[int, Path], list[RejectedFile]]:
    """Find the Session1..Session5 folders at root or up to two folders below it.

    A folder counts when it holds `sentences/wav` or `dialog/EmoEvaluation`. The first copy of
    a session (shallowest, then by path) is read; later copies are reported, not read.

    Args:
        root: data.root.

    Returns:
        Each session's folder by number, and a rejected row for every further copy.
    """
    sessions: dict[int, Path] = {}
    rejected: list[RejectedFile] = []
    for pattern in ("Session*", "*/Session*", "*/*/Session*"):
        for folder in sorted(root.glob(pattern)):
            match = SESSION_FOLDER.match(folder.name)
            hidden = any(part.startswith(".") for part in folder.relative_to(root).parts)
            if not match or hidden or not folder.is_dir():
                continue
            if not (
                (folder / "sentences" / "wav").is_dir() or (folder / "dialog" / "EmoEvaluation").is_dir()
            ):
                continue
            number = int(match.group(1))
            if number in sessions:
                rejected.append(
                    RejectedFile(
                        str(folder),
                        f"a second copy of Session{number} (an archive unpacked twice?); only "
                        f"{sessions[number]} is read; remove one copy",
                    )
                )
            else:
                sessions[number] = folder
    return dict(sorted(sessions.items())), rejected
