"""Annotator votes: what each clip's raters said, as counts in the utterance table.

A corpus that publishes its raters' answers adds one count column per emotion of
`ser_lightning.labels.KNOWN_EMOTIONS` (`votes_neutral`, `votes_happy`, ...) and `votes_other` (answers
that name no emotion the project knows, or none the corpus's label set keeps). The counts are
the single record; a run turns them into its distribution over its own labels with
`vote_distribution`, which renames by the run's label map exactly as the hard labels are renamed
and counts (never drops silently) the votes that fall outside the run's labels.

Sources:

- **CREMA-D**: `finishedResponses.csv` of the release, the raters' final answers; the rows with
  `queryType` 1 (voice only) are the ones about the audio. `respEmo` is A, D, F, H, N or S.
- **IEMOCAP**: the evaluators' categorical lines (`C-E1:` ...) of the EmoEvaluation files; the
  actor's own rating (`C-F1`, `C-M1`) is not a vote. See `iemocap_votes`.
- **MSP-Podcast**: `Labels/labels_detailed.csv` when the release has it, each annotator's
  primary emotion (`EmoClass_Major`: Neutral, Angry, ..., Other).
- **demo**: simulated raters (`ser_lightning.demo_corpus.votes`).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ser_lightning.labels import KNOWN_EMOTIONS
from ser_lightning.utils.errors import UserError

VOTE_PREFIX = "votes_"
OTHER_VOTES = "votes_other"
VOTE_COLUMNS: tuple[str, ...] = tuple(VOTE_PREFIX + name for name in KNOWN_EMOTIONS) + (OTHER_VOTES,)
# corpora whose parser (or generator) fills the vote columns, for the refusal's message
CORPORA_WITH_VOTES: tuple[str, ...] = ("crema_d", "iemocap", "msp_podcast", "demo")

# CREMA-D's respEmo letters onto KNOWN_EMOTIONS (the same six as the file names' codes)
CREMA_D_VOTE_CODES: dict[str, str] = {
    "A": "angry",
    "D": "disgust",
    "F": "fearful",
    "H": "happy",
    "N": "neutral",
    "S": "sad",
}
CREMA_D_VOICE_QUERY = "1"  # finishedResponses.csv queryType of the voice-only ratings
CREMA_D_VOTE_COLUMNS = ("clipName", "queryType", "respEmo")

# MSP-Podcast's labels_detailed.csv: each annotator's primary emotion (EmoClass_Major) by name
MSP_PODCAST_VOTE_COLUMNS = ("FileName", "EmoClass_Major")
MSP_PODCAST_VOTE_NAMES: dict[str, str] = {
    "neutral": "neutral",
    "angry": "angry",
    "sad": "sad",
    "happy": "happy",
    "fear": "fearful",
    "disgust": "disgust",
    "surprise": "surprised",
    "contempt": "contempt",
}

# IEMOCAP's categorical annotator names onto its label codes (iemocap.IEMOCAP_EMOTIONS)
IEMOCAP_VOTE_NAMES: dict[str, str] = {
    "neutral": "neu",
    "neutral state": "neu",
    "happiness": "hap",
    "excited": "exc",
    "anger": "ang",
    "sadness": "sad",
    "frustration": "fru",
    "fear": "fea",
    "surprise": "sur",
    "disgust": "dis",
}


class VoteTableError(UserError):
    """A vote table that cannot be read; the message names the file and what is wrong."""


def vote_row(counts: Mapping[str, float]) -> dict[str, float]:
    """The vote columns of one clip from its counts per emotion name.

    Args:
        counts: emotion name (KNOWN_EMOTIONS) or anything else -> number of votes; names outside
            KNOWN_EMOTIONS are summed into `votes_other`.

    Returns:
        One count per VOTE_COLUMNS entry.
    """
    row = dict.fromkeys(VOTE_COLUMNS, 0.0)
    for name, count in counts.items():
        column = VOTE_PREFIX + name if name in KNOWN_EMOTIONS else OTHER_VOTES
        row[column] += float(count)
    return row


def _vote_rows(path: str | Path, columns: Sequence[str], table: str, fix: str) -> Iterator[dict]:
    """Read a vote table's rows as dicts, after checking that it has the columns read from it.

    Args:
        path: the CSV file.
        columns: the columns the reader uses.
        table: the table's name in the release, for the message.
        fix: what to do about a table without them.

    Yields:
        Each row.

    Raises:
        VoteTableError: If the file lacks one of `columns`.
    """
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [name for name in columns if name not in (reader.fieldnames or ())]
        if missing:
            raise VoteTableError(
                f"{path} lacks the column(s) {missing} of {table} (needs {list(columns)}); {fix}"
            )
        yield from reader


def read_crema_d_votes(path: str | Path) -> dict[str, Counter]:
    """The voice-only votes of CREMA-D's `finishedResponses.csv`, per clip name.

    Args:
        path: the file.

    Returns:
        clip name (e.g. `1001_DFA_ANG_XX`) -> Counter of emotion names; an answer outside A, D, F,
        H, N, S counts as `other`.

    Raises:
        VoteTableError: If the file lacks one of the columns clipName, queryType, respEmo.
    """
    votes: dict[str, Counter] = {}
    for row in _vote_rows(
        path, CREMA_D_VOTE_COLUMNS, "CREMA-D's finishedResponses.csv", "use the file of the CREMA-D release"
    ):
        if str(row["queryType"]).strip() != CREMA_D_VOICE_QUERY:
            continue
        answer = CREMA_D_VOTE_CODES.get(str(row["respEmo"]).strip(), "other")
        votes.setdefault(str(row["clipName"]).strip(), Counter())[answer] += 1
    return votes


def read_msp_podcast_votes(path: str | Path) -> dict[str, Counter]:
    """Each annotator's primary emotion of MSP-Podcast's `Labels/labels_detailed.csv`, per file.

    Args:
        path: the file.

    Returns:
        FileName (e.g. `MSP-PODCAST_0001_0008.wav`) -> Counter of emotion names; a name outside
        MSP-Podcast's eight emotions (Other, ...) counts as `other`.

    Raises:
        VoteTableError: If the file lacks the column FileName or EmoClass_Major.
    """
    votes: dict[str, Counter] = {}
    for row in _vote_rows(
        path,
        MSP_PODCAST_VOTE_COLUMNS,
        "MSP-Podcast's labels_detailed.csv",
        "use the file of the release or remove it",
    ):
        answer = MSP_PODCAST_VOTE_NAMES.get(str(row["EmoClass_Major"]).strip().lower(), "other")
        votes.setdefault(str(row["FileName"]).strip(), Counter())[answer] += 1
    return votes


def add_vote_columns(table: pd.DataFrame, votes: Mapping[str, Mapping[str, float]], key: pd.Series) -> None:
    """Add the vote columns to a table in place, each row's votes looked up by `key`.

    Args:
        table: the utterance table.
        votes: key -> counts by emotion name (`vote_row`); a key it lacks gets no votes.
        key: the lookup key of each row (e.g. its file's name), aligned with the table.
    """
    counts = [vote_row(votes.get(name, {})) for name in key]
    for column in VOTE_COLUMNS:
        table[column] = [float(row[column]) for row in counts]


def iemocap_votes(categories: Iterable, label_set: Mapping[str, str]) -> Counter:
    """The evaluators' categorical votes of one IEMOCAP turn, named as its hard label would be.

    Each evaluator (`E1`, `E2`, ...; the actor's own `F1`/`M1` rating is left out) gives one vote
    split equally over the labels of its line, so that an evaluator naming two emotions weighs
    as much as one naming one. A name maps to IEMOCAP's code, then through the label set the
    hard label goes through (`4class` makes `exc` happy); a name the label set leaves out
    (`Frustration` under 4class, `Other:...`) counts as `other`.

    Args:
        categories: the turn's `AnnotatorCategories`.
        label_set: IEMOCAP label code -> emotion of the run's corpus_options.label_set.

    Returns:
        Counter of emotion names (fractional counts where an evaluator named several).
    """
    votes: Counter = Counter()
    for line in categories:
        if not line.annotator.startswith("E") or not line.labels:
            continue
        share = 1.0 / len(line.labels)
        for name in line.labels:
            code = IEMOCAP_VOTE_NAMES.get(name.strip().lower())
            votes[label_set.get(code, "other") if code else "other"] += share
    return votes


def has_votes(table: pd.DataFrame) -> bool:
    """Whether an utterance table carries vote columns.

    Args:
        table: the table.

    Returns:
        True when every VOTE_COLUMNS entry is a column.
    """
    return all(column in table.columns for column in VOTE_COLUMNS)


def vote_distribution(
    table: pd.DataFrame, label_names: Sequence[str], label_map: Mapping[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each clip's distribution of votes over the run's labels, and the votes outside them.

    Args:
        table: an utterance table with the vote columns.
        label_names: the run's labels, in order.
        label_map: data.label_map (corpus name -> the run's), applied as to the hard labels.

    Returns:
        `(distribution, outside)`: `(rows, labels)` float64 rows summing to 1 (a row whose votes
        all fall outside the run's labels is NaN), and `(rows,)` the number of votes each row
        has outside them (other answers and emotions the run does not classify).
    """
    mapping = dict(label_map or {})
    counts = np.zeros((len(table), len(label_names)), dtype=np.float64)
    index = {name: i for i, name in enumerate(label_names)}
    outside = table[OTHER_VOTES].to_numpy(dtype=np.float64).copy()
    for name in KNOWN_EMOTIONS:
        values = table[VOTE_PREFIX + name].to_numpy(dtype=np.float64)
        target = index.get(mapping.get(name, name))
        if target is None:
            outside += values
        else:
            counts[:, target] += values
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        distribution = np.where(totals > 0, counts / totals, np.nan)
    return distribution, outside


def agreement(distribution: np.ndarray) -> np.ndarray:
    """Each clip's annotator agreement: the share of its votes that went to the majority emotion.

    Args:
        distribution: `(rows, labels)` vote distributions.

    Returns:
        `(rows,)` values in [1 / labels, 1].
    """
    return np.asarray(distribution, dtype=np.float64).max(axis=1)


def no_votes_message(corpus: str) -> str:
    """The refusal of data.targets=soft for a corpus without votes.

    Args:
        corpus: data.corpus.

    Returns:
        The message, naming the corpus, the corpora with votes and the fix.
    """
    return (
        f"data.targets=soft needs each clip's annotator votes, and data.corpus={corpus} has none here "
        f"(corpora with votes: {', '.join(CORPORA_WITH_VOTES)}; CREMA-D needs finishedResponses.csv in its "
        "root, MSP-Podcast Labels/labels_detailed.csv); use data.targets=hard"
    )
