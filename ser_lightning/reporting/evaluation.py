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

Given the speaker (and gender, intensity) of each clip, the report also holds:
- 95 % intervals of UA, WA and macro-F1 by a bootstrap over speakers (reporting/intervals.py),
  with the number of resamples and the seed;
- calibration: ECE and the reliability table of the probabilities (and of the uncalibrated ones
  when a temperature was applied), drawn as reliability.png;
- breakdowns per gender, speaker and intensity (reporting/breakdowns.py) and the gender gap;
- the protocol's note on speakers: whether the test speakers were heard in training, and how
  many test clips have their speaker in the training split.
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
    calibration_bins,
    confusion_counts,
    expected_calibration_error,
    macro_f1,
    negative_log_likelihood,
    per_class_table,
    unweighted_accuracy,
    weighted_accuracy,
    weighted_f1,
)
from ser_lightning.reporting.breakdowns import breakdown_table, gender_gap, plot_breakdowns  # noqa: E402
from ser_lightning.reporting.intervals import BootstrapSettings, speaker_bootstrap  # noqa: E402
from ser_lightning.utils.errors import InvalidSetting

METRIC_NAMES = {
    "accuracy": "accuracy (WA)",
    "ua": "unweighted accuracy (UA)",
    "macro_f1": "macro-F1",
    "weighted_f1": "weighted F1",
}
PROBABILITY_PREFIX = "prob_"
# columns of the clip table a report may be given (clip_info), written beside each prediction
CLIP_COLUMNS = ("speaker", "gender", "intensity", "corpus")


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
    # speaker, gender, intensity, corpus of each clip (None when the caller had no table)
    clips: pd.DataFrame | None = None
    # the speaker bootstrap: method, resamples, seed, confidence, speakers, intervals per score
    intervals: dict = field(default_factory=dict)
    # temperature applied, ECE (and before calibration), NLL, the reliability table
    calibration: dict = field(default_factory=dict)
    reliability: pd.DataFrame = field(default_factory=pd.DataFrame)
    # scores per gender / speaker / intensity (reporting/breakdowns.py) and the gender gap
    breakdowns: pd.DataFrame = field(default_factory=pd.DataFrame)
    gender_gap: dict | None = None
    # the split's note on speakers (leakage.speaker_note): speaker_independent, test clips whose
    # speaker is in the training split
    speakers: dict = field(default_factory=dict)

    @property
    def y_pred(self) -> np.ndarray:
        """The predicted label index of each file: its most probable class."""
        return self.probabilities.argmax(axis=1)

    @property
    def confusion_normalized(self) -> np.ndarray:
        """Rows divided by their support (each row is recall per predicted class); empty rows stay 0."""
        support = self.confusion.sum(axis=1, keepdims=True)
        return np.divide(self.confusion, support, out=np.zeros(self.confusion.shape), where=support > 0)

    def predictions_frame(self) -> pd.DataFrame:
        """Tabulate the per-file predictions, as predictions.csv holds them.

        Returns:
            One row per file: `file`, `true`, `predicted`, `prob_<emotion>` per label and the
            clip columns (speaker, gender, intensity, corpus) the report has.
        """
        frame = pd.DataFrame(
            {
                "file": self.files,
                "true": [self.labels[i] for i in self.y_true],
                "predicted": [self.labels[i] for i in self.y_pred],
            }
        )
        for k, name in enumerate(self.labels):
            frame[PROBABILITY_PREFIX + name] = self.probabilities[:, k]
        if self.clips is not None:
            for column in CLIP_COLUMNS:
                if column in self.clips:
                    frame[column] = self.clips[column].astype(str).to_numpy()
        return frame

    def metrics_record(self, title: str = "") -> dict:
        """Assemble what metrics.json holds.

        Args:
            title: the report's title, stored under `title`.

        Returns:
            The scores, plus their intervals, calibration, gender gap and speaker note where the
            report has them.
        """
        record = {"title": title, **self.metrics}
        if self.intervals:
            record["intervals"] = self.intervals
        if self.calibration:
            record["calibration"] = self.calibration
        if self.gender_gap is not None:
            record["gender_gap"] = self.gender_gap
        if self.speakers:
            record["speakers"] = self.speakers
        return record


def evaluation_report(
    files,
    y_true,
    probabilities,
    labels,
    clips: pd.DataFrame | None = None,
    bootstrap: BootstrapSettings | None = None,
    uncalibrated_probabilities=None,
    temperature: float | None = None,
    speakers: dict | None = None,
) -> EvaluationReport:
    """Score predicted class probabilities `(N, K)` against true label indices `(N,)`.

    `clips` (a frame with `speaker` and optionally `gender`, `intensity`, `corpus`, one row per
    file) adds the speaker-bootstrap intervals (`bootstrap` settings, default 1000 resamples,
    seed 0) and the breakdowns. `uncalibrated_probabilities`, given when `temperature` was
    applied to get `probabilities`, add the ECE before calibration. `speakers` is the split's
    note on speakers, carried into the files and the printout.

    Args:
        files: one name or path per item.
        y_true: true label indices `(N,)`.
        probabilities: predicted class probabilities `(N, K)`.
        labels: the K label names, in index order.
        clips: per-file speaker (and gender, intensity, corpus), for intervals and breakdowns.
        bootstrap: resamples and seed of the speaker bootstrap.
        uncalibrated_probabilities: the probabilities before `temperature`, for their ECE and NLL.
        temperature: the temperature that gave `probabilities` (recorded; 1.0 when None).
        speakers: the split's note on speakers.

    Returns:
        The scored report.

    Raises:
        InvalidSetting: when the files, labels and probabilities do not line up, there are no
            files, or `clips` lacks a speaker column or has a different number of rows.
    """
    labels = list(labels)
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if (
        probabilities.ndim != 2
        or probabilities.shape != (len(y_true), len(labels))
        or len(files) != len(y_true)
    ):
        raise InvalidSetting(
            f"evaluation needs one file, label and row of {len(labels)} probabilities per item; got "
            f"{len(files)} files, {len(y_true)} labels, probabilities of shape {probabilities.shape}"
        )
    if len(y_true) == 0:
        raise InvalidSetting("evaluation got no files to score")
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
    report.reliability = calibration_bins(probabilities, y_true)
    report.calibration = {
        "temperature": 1.0 if temperature is None else float(temperature),
        "ece": expected_calibration_error(probabilities, y_true),
        "nll": negative_log_likelihood(probabilities, y_true),
        "bins": int(len(report.reliability)),
    }
    if uncalibrated_probabilities is not None:
        uncalibrated = np.asarray(uncalibrated_probabilities, dtype=np.float64)
        report.calibration["ece_uncalibrated"] = expected_calibration_error(uncalibrated, y_true)
        report.calibration["nll_uncalibrated"] = negative_log_likelihood(uncalibrated, y_true)
    if clips is not None:
        clips = clips.reset_index(drop=True)
        if len(clips) != len(y_true) or "speaker" not in clips:
            raise InvalidSetting(
                f"clips must have a speaker column and one row per file; got {list(clips.columns)}"
            )
        report.clips = clips
        report.intervals = speaker_bootstrap(
            y_true, report.y_pred, clips["speaker"], len(labels), bootstrap or BootstrapSettings()
        )
        report.breakdowns = breakdown_table(y_true, report.y_pred, clips, labels)
        report.gender_gap = gender_gap(report.breakdowns)
    report.speakers = dict(speakers or {})
    return report


def interval_text(report: EvaluationReport, key: str) -> str:
    """Format a score's interval.

    Args:
        report: the report holding the intervals.
        key: the score's name (`ua`, `accuracy`, `macro_f1`, ...).

    Returns:
        `[low, high]` to three decimals, or '' when the report has no interval for it.
    """
    interval = (report.intervals.get("intervals") or {}).get(key)
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def speaker_note_text(speakers: dict) -> str:
    """Put the split's note on speakers in words.

    Args:
        speakers: the note (`leakage.speaker_note`).

    Returns:
        A sentence saying whether test speakers were heard in training ('' when unknown).
    """
    if not speakers:
        return ""
    if speakers.get("speaker_independent"):
        return "speaker-independent: no test speaker is in the training split"
    n, total = speakers.get("test_clips_with_training_speaker"), speakers.get("test_clips")
    return (
        f"SPEAKER-DEPENDENT protocol ({speakers.get('split')}): {n} of {total} test clips have their "
        "speaker in the training split; scores are optimistic for new speakers"
    )


def write_report(report: EvaluationReport, directory: str | Path, title: str = "") -> dict[str, Path]:
    """Write a report's files into `directory`, creating it if needed.

    The files are metrics.json, per_class.csv, the confusion matrices (CSV, PNG), predictions.csv,
    reliability.csv and reliability.png, and (given clip information) breakdowns.csv and breakdowns.png.

    Args:
        report: the report to write.
        directory: the folder to write into.
        title: the title stored in metrics.json and shown on the plots.

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
    paths["metrics"].write_text(json.dumps(report.metrics_record(title), indent=2))
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


def print_report(report: EvaluationReport, title: str = "Evaluation", console: Console | None = None) -> None:
    """The metrics and the per-class table, for a person."""
    console = console or Console()
    console.print(f"[bold]{title}[/bold]")
    note = speaker_note_text(report.speakers)
    if note:
        console.print(("[bold red]" if not report.speakers.get("speaker_independent") else "") + note)
    overall = Table(show_header=False)
    overall.add_column("metric", style="bold")
    overall.add_column("value", justify="right")
    with_intervals = bool(report.intervals)
    if with_intervals:
        overall.add_column(f"{100 * report.intervals['confidence']:.0f} % interval", justify="right")
    for key, name in METRIC_NAMES.items():
        cells = [name, f"{report.metrics[key]:.3f}"] + (
            [interval_text(report, key)] if with_intervals else []
        )
        overall.add_row(*cells)
    overall.add_row("files", str(report.metrics["num_files"]), *([""] if with_intervals else []))
    calibration = report.calibration
    if calibration:
        ece = f"{calibration['ece']:.3f}"
        if "ece_uncalibrated" in calibration:
            ece += (
                f" (uncalibrated {calibration['ece_uncalibrated']:.3f}, T={calibration['temperature']:.2f})"
            )
        overall.add_row("calibration error (ECE)", ece, *([""] if with_intervals else []))
    if report.gender_gap is not None:
        gap = report.gender_gap
        overall.add_row(
            "UA female / male",
            f"{gap['ua_female']:.3f} / {gap['ua_male']:.3f} (gap {gap['female_minus_male']:+.3f})",
            *([""] if with_intervals else []),
        )
    console.print(overall)
    if with_intervals:
        console.print(
            f"intervals: {report.intervals['method']}, {report.intervals['speakers']} test speakers, "
            f"{report.intervals['resamples']} resamples, seed {report.intervals['seed']}"
            + (f" ({report.intervals['note']})" if report.intervals.get("note") else "")
        )
    per_class = Table()
    per_class.add_column("emotion", style="bold")
    for column in ("precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="right")
    for name, row in report.per_class.iterrows():
        per_class.add_row(
            name, f"{row.precision:.3f}", f"{row.recall:.3f}", f"{row.f1:.3f}", str(int(row.support))
        )
    console.print(per_class)
