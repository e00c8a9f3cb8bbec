"""IEMOCAP's EmoEvaluation files: each turn's label, times and [V, A, D], and every annotator's say.

`Session{N}/dialog/EmoEvaluation/<dialog>.txt` holds one block per turn: a summary line with the
turn's times, utterance id, majority label and mean valence/activation/dominance, then one line
per annotator, categorical (`C-`) or dimensional (`A-`); `E1`, `E2`, ... are evaluators, `F1` /
`M1` the actor rating their own turn. A header line starting with `%` names the columns:

    % [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

    [6.2901 - 8.2357]	Ses01F_impro01_F000	neu	[2.5000, 2.5000, 2.5000]
    C-E2:	Neutral;	()
    C-F1:	Neutral; Frustration;	(curious)
    A-E3:	val 3; act 2; dom  2;	()

Nothing in a file is executed or used as a path: utterance ids are checked against IEMOCAP's
naming scheme by the corpus parser before a path is made of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_NUMBER = r"\d+(?:\.\d*)?"
TURN_LINE = re.compile(
    rf"^\[\s*(?P<start>{_NUMBER})\s*-\s*(?P<end>{_NUMBER})\s*\]\s+(?P<utterance>\S+)\s+(?P<label>\S+)"
    rf"\s+\[\s*(?P<v>{_NUMBER})\s*,\s*(?P<a>{_NUMBER})\s*,\s*(?P<d>{_NUMBER})\s*\]$"
)
CATEGORY_LINE = re.compile(
    r"^C-(?P<annotator>[A-Za-z]+\d*)\s*:\s*(?P<labels>[^()]*?)\s*(?:\((?P<comment>.*)\))?$"
)
RATING_LINE = re.compile(
    rf"^A-(?P<annotator>[A-Za-z]+\d*)\s*:\s*val\s*(?P<v>{_NUMBER})\s*;\s*act\s*(?P<a>{_NUMBER})\s*;"
    rf"\s*dom\s*(?P<d>{_NUMBER})\s*;?\s*(?:\((?P<comment>.*)\))?$"
)
# an utterance id anywhere in a line, to name the turn of a line that cannot be read
UTTERANCE_IN_LINE = re.compile(r"\bSes\d{2}[MF]_\S+_[MF]\w+\b")


@dataclass(frozen=True)
class AnnotatorCategories:
    """One annotator's categorical labels of a turn (a `C-` line).

    Attributes:
        annotator: `E1`, `E2`, ... for evaluators, `F1` / `M1` for the actor's own rating.
        labels: the labels as written (`Neutral`, `Frustration`, `Other:amused`), in order.
        comment: the annotator's note in parentheses, "" when empty.
    """

    annotator: str
    labels: tuple[str, ...]
    comment: str = ""


@dataclass(frozen=True)
class AnnotatorRatings:
    """One annotator's valence, activation and dominance of a turn (an `A-` line, scales 1-5).

    Attributes:
        annotator: `E1`, `E2`, ... for evaluators, `F1` / `M1` for the actor's own rating.
        valence: the `val` rating.
        activation: the `act` rating (arousal).
        dominance: the `dom` rating.
        comment: the annotator's note in parentheses, "" when empty.
    """

    annotator: str
    valence: float
    activation: float
    dominance: float
    comment: str = ""


@dataclass
class Turn:
    """One turn of an EmoEvaluation file: its summary line and the annotator lines under it.

    Attributes:
        utterance: the utterance id, e.g. `Ses01F_impro01_F000` (also the audio file's stem).
        start: the turn's start in the dialog, seconds.
        end: its end, seconds.
        label: the majority label code (`neu`, `hap`, ..., `xxx` when there was no majority).
        valence: the mean valence rating.
        activation: the mean activation rating.
        dominance: the mean dominance rating.
        source: the EmoEvaluation file.
        line: the summary line's number in it (1-based).
        categories: the annotators' categorical labels.
        ratings: the annotators' dimensional ratings.
    """

    utterance: str
    start: float
    end: float
    label: str
    valence: float
    activation: float
    dominance: float
    source: str
    line: int
    categories: list[AnnotatorCategories] = field(default_factory=list)
    ratings: list[AnnotatorRatings] = field(default_factory=list)

    @property
    def where(self) -> str:
        """`file:line` of the turn's summary line, for messages."""
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class LineProblem:
    """A line of an EmoEvaluation file that could not be read.

    Attributes:
        source: the file.
        line: the line's number (1-based).
        text: the line as written.
        reason: what is wrong with it.
        utterance: the utterance id the line names, when one can be seen in it.
    """

    source: str
    line: int
    text: str
    reason: str
    utterance: str | None = None

    @property
    def where(self) -> str:
        """`file:line` of the line, for messages."""
        return f"{self.source}:{self.line}"


@dataclass
class EmoEvaluation:
    """What one EmoEvaluation file holds.

    Attributes:
        path: the file.
        turns: its turns, in file order.
        problems: summary lines (or stray lines) that could not be read: their turns go unlabelled.
        annotator_problems: annotator lines that could not be read; their turn keeps its label.
    """

    path: Path
    turns: list[Turn] = field(default_factory=list)
    problems: list[LineProblem] = field(default_factory=list)
    annotator_problems: list[LineProblem] = field(default_factory=list)


def _turn(match: re.Match, source: str, line: int) -> Turn:
    return Turn(
        utterance=match["utterance"],
        start=float(match["start"]),
        end=float(match["end"]),
        label=match["label"],
        valence=float(match["v"]),
        activation=float(match["a"]),
        dominance=float(match["d"]),
        source=source,
        line=line,
    )


def _problem(source: str, line: int, text: str, reason: str) -> LineProblem:
    named = UTTERANCE_IN_LINE.search(text)
    return LineProblem(source, line, text, reason, named.group(0) if named else None)


def parse_emo_evaluation(text: str, source: str = "<text>") -> EmoEvaluation:
    """Parse the text of an EmoEvaluation file.

    Args:
        text: the file's text.
        source: the file's name in the records and messages.

    Returns:
        The turns with their annotator lines, and the lines that could not be read.
    """
    result = EmoEvaluation(Path(source))
    current: Turn | None = None
    in_unreadable_turn = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if line.startswith("["):
            match = TURN_LINE.match(line)
            if match is None:
                result.problems.append(
                    _problem(
                        source,
                        number,
                        line,
                        "not a turn line `[START - END]<TAB>UTTERANCE<TAB>LABEL<TAB>[V, A, D]`",
                    )
                )
                current, in_unreadable_turn = None, True
                continue
            if float(match["end"]) < float(match["start"]):
                result.problems.append(_problem(source, number, line, "the turn ends before it starts"))
                current, in_unreadable_turn = None, True
                continue
            current, in_unreadable_turn = _turn(match, source, number), False
            result.turns.append(current)
        elif line.startswith(("C-", "A-")):
            if not in_unreadable_turn:  # the lines of an unreadable turn go with it, already reported
                _annotator_line(line, number, source, current, result)
        else:
            result.problems.append(
                _problem(source, number, line, "neither a turn line nor an annotator line")
            )
    return result


def _annotator_line(line: str, number: int, source: str, turn: Turn | None, result: EmoEvaluation) -> None:
    if turn is None:
        result.annotator_problems.append(
            _problem(
                source, number, line, "an annotator line outside a turn (no readable turn line above it)"
            )
        )
        return
    if line.startswith("C-"):
        match = CATEGORY_LINE.match(line)
        labels = tuple(part.strip() for part in (match["labels"] if match else "").split(";") if part.strip())
        if match and labels:
            turn.categories.append(AnnotatorCategories(match["annotator"], labels, match["comment"] or ""))
            return
        reason = "not a categorical line `C-E1:<TAB>Label; ...;<TAB>(comment)`"
    else:
        match = RATING_LINE.match(line)
        if match:
            ratings = AnnotatorRatings(
                match["annotator"],
                float(match["v"]),
                float(match["a"]),
                float(match["d"]),
                match["comment"] or "",
            )
            turn.ratings.append(ratings)
            return
        reason = "not a dimensional line `A-E1:<TAB>val V; act A; dom D;<TAB>(comment)`"
    result.annotator_problems.append(LineProblem(source, number, line, reason, turn.utterance))


def read_emo_evaluation(path: str | Path) -> EmoEvaluation:
    """Read one EmoEvaluation file (`Session{N}/dialog/EmoEvaluation/<dialog>.txt`).

    Bytes that are not UTF-8 are replaced rather than stopping the scan; a line they spoil is
    reported like any unreadable line.

    Args:
        path: the file.

    Returns:
        Its turns with their annotator lines, and the lines that could not be read.
    """
    path = Path(path)
    parsed = parse_emo_evaluation(path.read_text(encoding="utf-8", errors="replace"), str(path))
    parsed.path = path
    return parsed
