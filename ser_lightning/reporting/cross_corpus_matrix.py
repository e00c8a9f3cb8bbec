"""The cross-corpus matrix: train corpus × test corpus UA with speaker intervals, written and printed.

Each `MatrixCell` is one model (trained on `train`) scored on one corpus (`test`): the diagonal
on the training run's own test split (its `summary.json`), every other cell on all files of the
test corpus (an `eval` with `split=all`, its `eval.json`). `cells_frame` turns the cells into a
table; `write_matrix` writes it as CSV (one row per cell, and the UA matrix alone), a markdown
table, a heatmap (PNG) and JSON; `print_matrix` prints it as a rich table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

DIAGONAL_NOTE = (
    "diagonal: the training run's own test split (summary.json); "
    "other cells: every file of the test corpus (eval split=all)"
)


@dataclass(frozen=True)
class MatrixCell:
    """One model scored on one corpus.

    Attributes:
        train: the corpus the model was trained on.
        test: the corpus it was scored on.
        split: "test" (the training run's own test split) or "all" (every file of the corpus).
        ua: unweighted accuracy.
        ua_low: the interval's lower end (None with fewer than two test speakers).
        ua_high: its upper end.
        confidence: the interval's level (0.95).
        files: the number of files scored.
        speakers: the number of test speakers the interval resamples.
        protocol_hash: the protocol card hash of the test (`ser_lightning.data.protocol_card`).
        source: the summary.json or eval.json the cell was read from.
    """

    train: str
    test: str
    split: str
    ua: float
    ua_low: float | None
    ua_high: float | None
    confidence: float
    files: int
    speakers: int
    protocol_hash: str
    source: str

    @classmethod
    def from_scores(
        cls,
        train: str,
        test: str,
        split: str,
        ua: float,
        intervals: dict | None,
        files: int,
        protocol_card: dict,
        source: str | Path,
    ) -> MatrixCell:
        """Build a cell from a score and its interval record (`speaker_bootstrap`'s).

        Args:
            train: the training corpus.
            test: the test corpus.
            split: "test" or "all".
            ua: the UA.
            intervals: the report's interval record, or None.
            files: the number of files scored.
            protocol_card: the test's protocol card.
            source: the file the scores come from.

        Returns:
            The cell.
        """
        intervals = intervals or {}
        low, high = (intervals.get("intervals") or {}).get("ua") or (None, None)
        return cls(
            train=train,
            test=test,
            split=split,
            ua=float(ua),
            ua_low=None if low is None else float(low),
            ua_high=None if high is None else float(high),
            confidence=float(intervals.get("confidence", 0.95)),
            files=int(files),
            speakers=int(intervals.get("speakers", 0)),
            protocol_hash=str((protocol_card or {}).get("hash", "")),
            source=str(source),
        )

    def text(self, digits: int = 3) -> str:
        """Put the cell in words: UA and its interval.

        Args:
            digits: decimals shown.

        Returns:
            `0.512 [0.431, 0.598]`, or the UA alone without an interval.
        """
        if self.ua_low is None or self.ua_high is None:
            return f"{self.ua:.{digits}f}"
        return f"{self.ua:.{digits}f} [{self.ua_low:.{digits}f}, {self.ua_high:.{digits}f}]"


def cells_frame(cells: Sequence[MatrixCell]) -> pd.DataFrame:
    """Put the cells in a table, one row per (train, test) pair.

    Args:
        cells: the matrix's cells.

    Returns:
        A frame with a column per `MatrixCell` field.
    """
    return pd.DataFrame([asdict(cell) for cell in cells])


def ua_matrix(cells: Sequence[MatrixCell], corpora: Sequence[str]) -> pd.DataFrame:
    """Arrange the cells' UA as the matrix: rows train corpora, columns test corpora.

    Args:
        cells: the matrix's cells.
        corpora: the corpora, in the order of rows and columns.

    Returns:
        A square frame of UA (NaN where a cell is missing).
    """
    matrix = pd.DataFrame(np.nan, index=list(corpora), columns=list(corpora), dtype=float)
    for cell in cells:
        matrix.loc[cell.train, cell.test] = cell.ua
    matrix.index.name = "train"
    matrix.columns.name = "test"
    return matrix


def _by_pair(cells: Sequence[MatrixCell]) -> dict[tuple[str, str], MatrixCell]:
    return {(cell.train, cell.test): cell for cell in cells}


def markdown_table(cells: Sequence[MatrixCell], corpora: Sequence[str], label_names: Sequence[str]) -> str:
    """Write the matrix as markdown: UA with its interval per cell, then each cell's protocol hash.

    Args:
        cells: the matrix's cells.
        corpora: the corpora, in order.
        label_names: the shared label set.

    Returns:
        The markdown text.
    """
    pairs = _by_pair(cells)
    confidence = next(iter(cells)).confidence if cells else 0.95

    def table(value) -> list[str]:
        lines = ["| train ↓ / test → | " + " | ".join(corpora) + " |", "|---" * (len(corpora) + 1) + "|"]
        for train in corpora:
            row = [value(pairs[(train, test)]) if (train, test) in pairs else "–" for test in corpora]
            lines.append(f"| **{train}** | " + " | ".join(row) + " |")
        return lines

    lines = [
        "# Cross-corpus matrix",
        "",
        f"UA with its {100 * confidence:.0f} % interval (bootstrap over test speakers), "
        f"labels {', '.join(label_names)}. {DIAGONAL_NOTE}.",
        "",
        *table(lambda cell: cell.text()),
        "",
        "Protocol card hash of each cell's test:",
        "",
        *table(lambda cell: f"`{cell.protocol_hash}`"),
        "",
    ]
    return "\n".join(lines)


def plot_matrix(cells: Sequence[MatrixCell], corpora: Sequence[str], path: Path) -> Path:
    """Draw the matrix as a heatmap, each cell annotated with its UA and interval.

    Args:
        cells: the matrix's cells.
        corpora: the corpora, in order.
        path: the PNG to write.

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = _by_pair(cells)
    values = ua_matrix(cells, corpora).to_numpy()
    size = 1.6 + 1.5 * len(corpora)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(corpora)), labels=list(corpora), rotation=30, ha="right")
    ax.set_yticks(range(len(corpora)), labels=list(corpora))
    ax.set_xlabel("test corpus")
    ax.set_ylabel("train corpus")
    ax.set_title("Cross-corpus UA (diagonal: own test split)")
    for i, train in enumerate(corpora):
        for j, test in enumerate(corpora):
            cell = pairs.get((train, test))
            if cell is None:
                continue
            text = f"{cell.ua:.2f}"
            if cell.ua_low is not None and cell.ua_high is not None:
                text += f"\n[{cell.ua_low:.2f}, {cell.ua_high:.2f}]"
            colour = "black" if cell.ua > 0.6 else "white"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    fig.colorbar(image, ax=ax, label="UA")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_matrix(
    cells: Sequence[MatrixCell],
    corpora: Sequence[str],
    label_names: Sequence[str],
    label_map: dict[str, str],
    directory: str | Path,
) -> dict[str, Path]:
    """Write the matrix's files.

    Args:
        cells: the matrix's cells.
        corpora: the corpora, in order.
        label_names: the shared label set.
        label_map: the harmonisation map every run used.
        directory: the folder to write into.

    Returns:
        The files written: `cells` (cross_corpus.csv, one row per cell), `matrix`
        (cross_corpus_ua.csv), `markdown` (cross_corpus.md), `plot` (cross_corpus.png) and
        `json` (cross_corpus.json).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = {
        "cells": directory / "cross_corpus.csv",
        "matrix": directory / "cross_corpus_ua.csv",
        "markdown": directory / "cross_corpus.md",
        "plot": directory / "cross_corpus.png",
        "json": directory / "cross_corpus.json",
    }
    written["cells"].write_text(cells_frame(cells).to_csv(index=False))
    written["matrix"].write_text(ua_matrix(cells, corpora).to_csv())
    written["markdown"].write_text(markdown_table(cells, corpora, label_names))
    plot_matrix(cells, corpora, written["plot"])
    record = {
        "corpora": list(corpora),
        "labels": list(label_names),
        "label_map": dict(label_map),
        "note": DIAGONAL_NOTE,
        "cells": [asdict(cell) for cell in cells],
    }
    written["json"].write_text(json.dumps(record, indent=2))
    return written


def print_matrix(
    cells: Sequence[MatrixCell],
    corpora: Sequence[str],
    label_names: Sequence[str],
    console: Console | None = None,
) -> None:
    """Print the matrix as a table: UA over its interval per cell, the mean of each row off the diagonal.

    Args:
        cells: the matrix's cells.
        corpora: the corpora, in order.
        label_names: the shared label set.
        console: where to print; a new rich Console when None.
    """
    console = console or Console()
    pairs = _by_pair(cells)
    table = Table(
        title=f"Cross-corpus UA ({', '.join(label_names)})",
        caption=DIAGONAL_NOTE,
        title_justify="left",
    )
    table.add_column("train ↓ / test →", style="bold")
    for test in corpora:
        table.add_column(test, justify="right")
    table.add_column("mean off-diagonal", justify="right")
    for train in corpora:
        row, others = [], []
        for test in corpora:
            cell = pairs.get((train, test))
            if cell is None:
                row.append("–")
                continue
            text = cell.text().replace(" [", "\n[")  # UA over its interval: narrow columns
            row.append(f"[bold]{text}[/bold]" if train == test else text)
            if train != test:
                others.append(cell.ua)
        row.append(f"{np.mean(others):.3f}" if others else "–")
        table.add_row(train, *row)
    console.print(table)
