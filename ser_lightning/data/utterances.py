"""The utterance table: the single record of a corpus that every later step reads.

One row per audio file. Parsers of each corpus naming scheme produce it; splits, caches and
reports consume it. Columns are fixed so that corpora can be concatenated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ser_lightning.data.votes import VOTE_COLUMNS
from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.labels import EMOTION_TO_INDEX

UTTERANCE_COLUMNS: tuple[str, ...] = (
    "path",  # absolute path of the audio file
    "emotion",  # emotion name from ser_lightning.labels.KNOWN_EMOTIONS
    "label",  # index of the emotion in KNOWN_EMOTIONS (a run re-indexes it to its own labels)
    "actor",  # speaker id, unique within the corpus
    "gender",  # "male" / "female" / "unknown"
    "intensity",  # "normal" / "strong" / corpus-specific level
    "statement",  # the sentence or word spoken, as the corpus codes it
    "vocal_channel",  # "speech" / "song"
    "corpus",  # corpus name, e.g. "ravdess"
    "partition",  # the corpus's own official partition (MSP-Podcast: Train, Development, Test1...), else ""
)


@dataclass
class RejectedFile:
    """A file a parser could not label, with the reason in words a user can act on."""

    path: str
    reason: str
    # "label": the parser refused the name (or its folder, or a second copy of a recording);
    # "audio": the file holds no decodable audio.
    stage: str = "label"


def rejected_frame(rejected: list[RejectedFile]) -> pd.DataFrame:
    """Tabulate rejected files as rejected_files.csv holds them.

    Args:
        rejected: the rejected files.

    Returns:
        One row per file: path, stage, reason.
    """
    return pd.DataFrame([(r.path, r.stage, r.reason) for r in rejected], columns=["path", "stage", "reason"])


@dataclass
class CorpusScan:
    """What scanning a corpus folder found: the labelled table and the files left out."""

    table: pd.DataFrame
    rejected: list[RejectedFile] = field(default_factory=list)
    excluded_by_filter: int = 0  # valid files deliberately left out (e.g. song when only speech is asked for)
    # every labelled file the parser found, before filters and the audio check (files_fingerprint
    # of the paths relative to the corpus root): the corpus's identity in a protocol card
    labelled_files_sha256: str = ""

    def rejected_frame(self) -> pd.DataFrame:
        """Tabulate the rejected files (`rejected_frame`).

        Returns:
            One row per rejected file: path, stage, reason.
        """
        return rejected_frame(self.rejected)

    def summary(self, examples: int = 3) -> str:
        """Summarise the scan in one paragraph for logs.

        Args:
            examples: how many rejected files to show.

        Returns:
            The counts of labelled, excluded and rejected files, and a few rejected files with
            their reasons.
        """
        lines = [f"{len(self.table)} labelled files"]
        if self.excluded_by_filter:
            lines.append(f"{self.excluded_by_filter} excluded by the corpus filter")
        if self.rejected:
            lines.append(f"{len(self.rejected)} rejected")
        text = ", ".join(lines)
        for item in self.rejected[:examples]:
            text += f"\n  rejected {item.path}: {item.reason}"
        if len(self.rejected) > examples:
            text += f"\n  ... and {len(self.rejected) - examples} more"
        return text


def make_table(rows: list[dict]) -> pd.DataFrame:
    """Build an utterance table from row dicts, sorted by path so that its order is stable.

    Args:
        rows: one dict per file with the UTTERANCE_COLUMNS other than `label`; `partition` may be
            left out (a corpus without official partitions), which makes it "". A corpus with
            dimensional ratings adds `arousal`, `valence` and `dominance` (its own scale) to
            every row; they become float columns of the same names. A corpus with annotator
            votes adds data/votes.py's VOTE_COLUMNS (counts) the same way.

    Returns:
        The table, with `label` = the emotion's index in KNOWN_EMOTIONS and the text columns as strings.
    """
    table = pd.DataFrame(rows, columns=list(UTTERANCE_COLUMNS[:2]) + list(UTTERANCE_COLUMNS[3:]))
    if rows and all(name in rows[0] for name in DIMENSIONS):  # a corpus with ratings, on its own scale
        for name in DIMENSIONS:
            table[name] = pd.to_numeric(pd.Series([row[name] for row in rows]), errors="coerce")
    if rows and all(name in rows[0] for name in VOTE_COLUMNS):  # annotator votes (data/votes.py)
        for name in VOTE_COLUMNS:
            table[name] = pd.Series([float(row[name]) for row in rows], dtype="float64")
    table.insert(2, "label", table["emotion"].map(EMOTION_TO_INDEX).astype("int64"))
    table["partition"] = table["partition"].fillna("")
    table = table.sort_values("path", kind="stable").reset_index(drop=True)
    for column in ("actor", "gender", "intensity", "statement", "vocal_channel", "corpus", "partition"):
        table[column] = table[column].astype(str)
    return table


def relative_paths(table: pd.DataFrame, root: str | Path) -> pd.Series:
    """Make the table's paths relative to the corpus root, for CSVs that stay valid when it moves.

    Args:
        table: a table with a `path` column.
        root: the corpus root.

    Returns:
        Each path relative to the root, or as it is when it lies outside the root.
    """
    root = Path(root).resolve()
    return table["path"].map(
        lambda p: str(Path(p).resolve().relative_to(root)) if Path(p).resolve().is_relative_to(root) else p
    )
