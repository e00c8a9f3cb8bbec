"""The short, readable summary printed at the end of a training run."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ser_lightning.reporting.evaluation import EvaluationReport

SKIP_STAGES = {"label": "refused by the corpus parser", "audio": "without decodable audio"}
METRIC_ROWS = (
    ("test/acc", "accuracy (WA)"),
    ("test/ua", "unweighted accuracy (UA)"),
    ("test/f1", "macro-F1"),
    ("val/ua_best", "best validation UA"),
)


def test_results(report: EvaluationReport | None) -> dict:
    """The summary's `test_results`: per-class recall and the confusion matrix of the test report."""
    if report is None:
        return {}
    return {
        "per_class_recall": dict(zip(report.labels, report.per_class["recall"].tolist(), strict=True)),
        "confusion_matrix": report.confusion.tolist(),
    }


def protocol_text(summary: dict) -> str:
    """The split in words: its name, and the fold for cross-validation runs."""
    protocol = summary.get("protocol") or {}
    text = str(protocol.get("split", summary.get("split")))
    if "fold" in protocol:
        text += f" fold {protocol['fold']} of {protocol['num_folds']}"
        if isinstance(protocol.get("folds"), str) and protocol["folds"] != "actors":
            text += f" ({protocol['folds']} folds)"
    if protocol.get("test_corpus"):
        text += f" testing on {protocol['test_corpus']}"
    return text


def print_run_summary(
    summary: dict, save_to: str | Path | None = None, console: Console | None = None
) -> None:
    console = console or Console()
    metrics = summary["metrics"]
    table = Table(title="Run summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    for key, label in METRIC_ROWS:
        if key in metrics:
            table.add_row(label, f"{metrics[key]:.3f}")
    recall = summary.get("test_results", {}).get("per_class_recall")
    if recall:
        table.add_row("test recall per class", "  ".join(f"{k} {v:.2f}" for k, v in recall.items()))
    sizes = summary.get("split_sizes", {})
    table.add_row("split", f"{protocol_text(summary)} ({', '.join(f'{k} {v}' for k, v in sizes.items())})")
    table.add_row("caches", ", ".join(summary.get("cache_events", [])) or "-")
    skipped = summary.get("skipped_files") or {}
    if skipped:
        detail = ", ".join(f"{n} {SKIP_STAGES.get(stage, stage)}" for stage, n in skipped.items())
        table.add_row("skipped files", f"{sum(skipped.values())} ({detail}): see rejected_files.csv")
    table.add_row("best checkpoint", summary.get("best_checkpoint") or "-")
    table.add_row("run directory", summary.get("output_dir", "-"))
    table.add_row("time", f"{summary.get('seconds', 0.0):.0f} s")
    console.print(table)
    if save_to is not None:
        Path(save_to).write_text(json.dumps(summary, indent=2, default=str))
