"""The evaluation report: metrics, per-class table, confusion matrices and per-file predictions.

One report serves `eval` and the end of `train`. Every number is computed from the report's
confusion matrix by ser_lightning.metrics, the definitions the training metrics use too (so the
report's UA is the `test/ua` and `val/ua` of training); they are scikit-learn's, so they can be
checked against any other tool:

- accuracy (WA): share of files classified correctly;
- unweighted accuracy (UA): mean recall over the emotions present in the true labels
  (`balanced_accuracy_score`), the headline SER metric on imbalanced data;
- macro-F1: mean F1 over the emotions present in the true or predicted labels;
- weighted F1: F1 per emotion weighted by its support.

The per-class table and the confusion matrices list every emotion of the model's label order,
so reports of different runs and corpora line up (absent emotions have support 0, recall 0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are files; no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from ser_lightning.metrics import (  # noqa: E402
    confusion_counts,
    macro_f1,
    per_class_table,
    unweighted_accuracy,
    weighted_accuracy,
    weighted_f1,
)

METRIC_NAMES = {
    "accuracy": "accuracy (WA)",
    "ua": "unweighted accuracy (UA)",
    "macro_f1": "macro-F1",
    "weighted_f1": "weighted F1",
}
PROBABILITY_PREFIX = "prob_"


@dataclass
class EvaluationReport:
    """Scores of one model on one set of labelled files."""

    labels: list[str]
    files: list[str]
    y_true: np.ndarray  # (N,) label indices
    probabilities: np.ndarray  # (N, K)
    metrics: dict[str, float] = field(default_factory=dict)
    per_class: pd.DataFrame = field(default_factory=pd.DataFrame)
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))

    @property
    def y_pred(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confusion_normalized(self) -> np.ndarray:
        """Rows divided by their support (each row is recall per predicted class); empty rows stay 0."""
        support = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, support, out=np.zeros(self.confusion.shape), where=support > 0)

    def predictions_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "file": self.files,
                "true": [self.labels[i] for i in self.y_true],
                "predicted": [self.labels[i] for i in self.y_pred],
            }
        )
        for k, name in enumerate(self.labels):
            frame[PROBABILITY_PREFIX + name] = self.probabilities[:, k]
        return frame


def evaluation_report(files, y_true, probabilities, labels) -> EvaluationReport:
    """Score predicted class probabilities `(N, K)` against true label indices `(N,)`."""
    labels = list(labels)
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if (
        probabilities.ndim != 2
        or probabilities.shape != (len(y_true), len(labels))
        or len(files) != len(y_true)
    ):
        raise ValueError(
            f"evaluation needs one file, label and row of {len(labels)} probabilities per item; got "
            f"{len(files)} files, {len(y_true)} labels, probabilities of shape {probabilities.shape}"
        )
    if len(y_true) == 0:
        raise ValueError("evaluation got no files to score")
    report = EvaluationReport(labels, [str(f) for f in files], y_true, probabilities)
    report.confusion = confusion_counts(y_true, report.y_pred, len(labels))
    report.metrics = {
        "accuracy": weighted_accuracy(report.confusion),
        "ua": unweighted_accuracy(report.confusion),
        "macro_f1": macro_f1(report.confusion),
        "weighted_f1": weighted_f1(report.confusion),
        "num_files": int(len(y_true)),
    }
    report.per_class = per_class_table(report.confusion, labels)
    return report


def write_report(report: EvaluationReport, directory: str | Path, title: str = "") -> dict[str, Path]:
    """Write metrics.json, per_class.csv, the confusion matrices (CSV, PNG) and predictions.csv."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": directory / "metrics.json",
        "per_class": directory / "per_class.csv",
        "confusion_counts": directory / "confusion_matrix.csv",
        "confusion_normalized": directory / "confusion_matrix_normalized.csv",
        "confusion_png": directory / "confusion_matrix.png",
        "predictions": directory / "predictions.csv",
    }
    paths["metrics"].write_text(json.dumps({"title": title, **report.metrics}, indent=2))
    report.per_class.to_csv(paths["per_class"])
    index = pd.Index(report.labels, name="true \\ predicted")
    pd.DataFrame(report.confusion, index=index, columns=report.labels).to_csv(paths["confusion_counts"])
    pd.DataFrame(report.confusion_normalized, index=index, columns=report.labels).to_csv(
        paths["confusion_normalized"], float_format="%.4f"
    )
    plot_confusion(report, paths["confusion_png"], title)
    report.predictions_frame().to_csv(paths["predictions"], index=False, float_format="%.6f")
    return paths


def plot_confusion(report: EvaluationReport, path: str | Path, title: str = "") -> None:
    """Counts and row-normalised confusion matrices side by side."""
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5), constrained_layout=True)
    panels = (
        (report.confusion, "d", "counts"),
        (report.confusion_normalized, ".2f", "row-normalised (recall)"),
    )
    for ax, (matrix, fmt, name) in zip(axes, panels, strict=True):
        ConfusionMatrixDisplay(matrix, display_labels=report.labels).plot(
            ax=ax, values_format=fmt, cmap="Blues", colorbar=False, xticks_rotation=45
        )
        ax.set_title(name)
    metrics = report.metrics
    fig.suptitle(
        f"{title}  WA {metrics['accuracy']:.3f}  UA {metrics['ua']:.3f}  macro-F1 {metrics['macro_f1']:.3f}  "
        f"({metrics['num_files']} files)".strip()
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_report(report: EvaluationReport, title: str = "Evaluation", console: Console | None = None) -> None:
    """The metrics and the per-class table, for a person."""
    console = console or Console()
    console.print(f"[bold]{title}[/bold]")
    overall = Table(show_header=False)
    overall.add_column("metric", style="bold")
    overall.add_column("value", justify="right")
    for key, name in METRIC_NAMES.items():
        overall.add_row(name, f"{report.metrics[key]:.3f}")
    overall.add_row("files", str(report.metrics["num_files"]))
    console.print(overall)
    per_class = Table()
    per_class.add_column("emotion", style="bold")
    for column in ("precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="right")
    for name, row in report.per_class.iterrows():
        per_class.add_row(
            name, f"{row.precision:.3f}", f"{row.recall:.3f}", f"{row.f1:.3f}", str(int(row.support))
        )
    console.print(per_class)
