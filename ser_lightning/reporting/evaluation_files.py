"""The evaluation report's files: metrics.json, the tables as CSV, and the confusion and reliability plots.

`write_report` writes what `eval` and the end of `train` leave of an `EvaluationReport` in the
run's folder; every file is written from the report alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are files; no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from ser_lightning.reporting.breakdowns import plot_breakdowns  # noqa: E402
from ser_lightning.reporting.conformal import write_conformal  # noqa: E402
from ser_lightning.reporting.evaluation import EvaluationReport  # noqa: E402


def write_report(
    report: EvaluationReport, directory: str | Path, title: str = "", protocol: dict | None = None
) -> dict[str, Path]:
    """Write a report's files into `directory`, creating it if needed.

    The files are metrics.json, per_class.csv, the confusion matrices (CSV, PNG), predictions.csv,
    reliability.csv and reliability.png, (given clip information) breakdowns.csv and breakdowns.png,
    and (given conformal sets) conformal.csv and conformal.png.

    Args:
        report: the report to write.
        directory: the folder to write into.
        title: the title stored in metrics.json and shown on the plots.
        protocol: the protocol card of the scored files (`ser_lightning.data.protocol_card`),
            stored in metrics.json.

    Returns:
        The path of each written file, by name (`metrics`, `per_class`, `confusion_png`, ...).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "metrics": directory / "metrics.json",
        "per_class": directory / "per_class.csv",
        "confusion_counts": directory / "confusion_matrix.csv",
        "confusion_normalized": directory / "confusion_matrix_normalized.csv",
        "confusion_png": directory / "confusion_matrix.png",
        "predictions": directory / "predictions.csv",
        "reliability": directory / "reliability.csv",
        "reliability_png": directory / "reliability.png",
    }
    record = report.metrics_record(title)
    if protocol is not None:
        record["protocol_card"] = protocol
    paths["metrics"].write_text(json.dumps(record, indent=2))
    report.per_class.to_csv(paths["per_class"])
    index = pd.Index(report.labels, name="true \\ predicted")
    pd.DataFrame(report.confusion, index=index, columns=report.labels).to_csv(paths["confusion_counts"])
    pd.DataFrame(report.confusion_normalized, index=index, columns=report.labels).to_csv(
        paths["confusion_normalized"], float_format="%.4f"
    )
    plot_confusion(report, paths["confusion_png"], title)
    report.predictions_frame().to_csv(paths["predictions"], index=False, float_format="%.6f")
    report.reliability.to_csv(paths["reliability"], index=False, float_format="%.6f")
    plot_reliability(report, paths["reliability_png"], title)
    if len(report.breakdowns):
        paths["breakdowns"] = directory / "breakdowns.csv"
        paths["breakdowns_png"] = directory / "breakdowns.png"
        report.breakdowns.to_csv(paths["breakdowns"], index=False, float_format="%.6f")
        plot_breakdowns(report.breakdowns, paths["breakdowns_png"], report.metrics["ua"], title)
    if report.conformal:
        paths.update(write_conformal(report.conformal_table, report.conformal, directory, title))
    return paths


def plot_reliability(report: EvaluationReport, path: str | Path, title: str = "") -> None:
    """Draw the reliability diagram: accuracy against mean confidence per confidence bin.

    Bar widths are the bins, with the diagonal of perfect calibration and the bin counts underneath.
    """
    table = report.reliability
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, constrained_layout=True
    )
    width = float(table["upper"].iloc[0] - table["lower"].iloc[0]) if len(table) else 0.1
    filled = table[table["files"] > 0]
    top.bar(
        filled["lower"],
        filled["accuracy"],
        width=width,
        align="edge",
        color="#4C72B0",
        edgecolor="white",
        label="accuracy",
    )
    top.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfectly calibrated")
    top.plot(
        filled["confidence"], filled["accuracy"], "o", color="#DD8452", markersize=3, label="mean confidence"
    )
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(fontsize=8, loc="upper left")
    calibration = report.calibration
    text = f"ECE {calibration['ece']:.3f}"
    if "ece_uncalibrated" in calibration:
        text += (
            f" (before temperature {calibration['temperature']:.2f}: {calibration['ece_uncalibrated']:.3f})"
        )
    top.set_title(f"{title}\n{text}".strip(), fontsize=9)
    bottom.bar(table["lower"], table["files"], width=width, align="edge", color="#999999")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("files")
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
