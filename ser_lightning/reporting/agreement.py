"""What the annotators said against what the model says: the test report's agreement section.

For a corpus with annotator votes (data/votes.py), each test clip has a distribution of votes
over the run's labels and an agreement (the share of its votes that went to the majority
emotion). This section reports:

- the Jensen-Shannon divergence between the predicted and the annotator distributions
  (`metrics.jensen_shannon_divergence`, bits; 0 = the same, 1 = disjoint), mean over clips;
- accuracy (against the clip's hard label) on high-agreement clips (agreement >= the threshold)
  and on low-agreement ones;
- how many low-agreement (ambiguous) clips the abstention of predict and serve
  (`min_confidence`: a top probability below it answers `uncertain`) catches, and how many
  high-agreement clips it catches too;
- a plot of the model's confidence (top probability) against the clips' agreement.

Where the report has speaker intervals for UA, the divergence and both accuracies get theirs too,
from the same bootstrap settings (`reporting/agreement_intervals.py`). Written as
`agreement.json`, `agreement.csv` (one row per clip) and `agreement.png` beside the report's other
files. `agreement_section` is the one path from a scored split to the section: the training
run's test report (`reporting/summary.py`) and eval both call it, on any model with classes
(hard- or soft-target trained: the votes come from the corpus).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ser_lightning.data.votes import agreement as vote_agreement
from ser_lightning.metrics import jensen_shannon_divergence
from ser_lightning.reporting.agreement_intervals import AGREEMENT_SCORES, agreement_bootstrap
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only
    from ser_lightning.data.datamodule import SERDataModule
    from ser_lightning.reporting.evaluation import EvaluationReport

DEFAULT_AGREEMENT_THRESHOLD = 0.75


@dataclass(frozen=True)
class AgreementSettings:
    """The split of clips by agreement and the abstention threshold the report checks.

    Attributes:
        threshold: a clip is high-agreement when its majority share is at least this.
        min_confidence: the abstention threshold of predict/serve whose catch is reported.
    """

    threshold: float = DEFAULT_AGREEMENT_THRESHOLD
    min_confidence: float = 0.5

    def __post_init__(self) -> None:
        for name in ("threshold", "min_confidence"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise InvalidSetting(f"agreement.{name}={value} must lie in [0, 1]")


def agreement_table(
    files: Sequence[str],
    y_true: np.ndarray,
    probabilities: np.ndarray,
    annotators: np.ndarray,
    labels: Sequence[str],
    settings: AgreementSettings,
    speakers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per clip: its agreement, divergence, prediction and whether abstention catches it.

    Args:
        files: the clips' names.
        y_true: hard label indices `(N,)`.
        probabilities: predicted distributions `(N, K)`.
        annotators: the annotators' distributions `(N, K)`; a NaN row (no vote for the run's
            labels) is left out.
        labels: the K label names.
        settings: threshold and min_confidence.
        speakers: each clip's speaker, for the speaker intervals; None for none.

    Returns:
        Columns file, (speaker,) label, predicted, correct, confidence, agreement, high_agreement,
        js_divergence, abstains.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    annotators = np.asarray(annotators, dtype=np.float64)
    keep = np.isfinite(annotators).all(axis=1)
    y_true = np.asarray(y_true)[keep]
    probabilities, annotators = probabilities[keep], annotators[keep]
    predicted = probabilities.argmax(axis=1)
    agreement = vote_agreement(annotators)
    confidence = probabilities.max(axis=1)
    names = np.asarray(list(labels))
    speaker = {} if speakers is None else {"speaker": np.asarray([str(s) for s in speakers])[keep]}
    return pd.DataFrame(
        {
            "file": np.asarray(list(files))[keep],
            **speaker,
            "label": names[y_true],
            "predicted": names[predicted],
            "correct": predicted == y_true,
            "confidence": confidence,
            "agreement": agreement,
            "high_agreement": agreement >= settings.threshold,
            "js_divergence": jensen_shannon_divergence(probabilities, annotators),
            "abstains": confidence < settings.min_confidence,
        }
    )


def _accuracy(values: pd.Series) -> float | None:
    return float(values.mean()) if len(values) else None


def agreement_summary(
    table: pd.DataFrame,
    settings: AgreementSettings,
    left_out: int = 0,
    bootstrap: BootstrapSettings | None = None,
) -> dict:
    """The section's numbers from `agreement_table`.

    Args:
        table: the per-clip table.
        settings: threshold and min_confidence.
        left_out: clips without a vote for the run's labels (not in the table).
        bootstrap: given (and the table has speakers), the speaker intervals of the scores.

    Returns:
        js_divergence (mean), accuracy_high_agreement, accuracy_low_agreement (None where the group
        is empty), the group sizes, what abstention at min_confidence catches and, with
        `bootstrap`, `intervals` (`agreement_intervals.agreement_bootstrap`).
    """
    high, low = table[table["high_agreement"]], table[~table["high_agreement"]]
    intervals = (
        {"intervals": agreement_bootstrap(table, bootstrap)}
        if bootstrap is not None and "speaker" in table and len(table)
        else {}
    )
    return {
        "clips": int(len(table)),
        "clips_without_votes": int(left_out),
        "threshold": float(settings.threshold),
        "js_divergence": float(table["js_divergence"].mean()) if len(table) else None,
        "mean_agreement": float(table["agreement"].mean()) if len(table) else None,
        "high_agreement_clips": int(len(high)),
        "low_agreement_clips": int(len(low)),
        "accuracy_high_agreement": _accuracy(high["correct"]),
        "accuracy_low_agreement": _accuracy(low["correct"]),
        "min_confidence": float(settings.min_confidence),
        "abstains_low_agreement": int(low["abstains"].sum()),
        "abstains_high_agreement": int(high["abstains"].sum()),
        **intervals,
    }


def agreement_metrics(summary: dict | None, prefix: str = "test/") -> dict[str, float]:
    """The section's scores as logged metrics (`test/js_divergence`, ...), for W&B and the study report.

    Args:
        summary: `agreement_summary`'s record, or None (no votes: no metrics).
        prefix: the stage's prefix.

    Returns:
        `{prefix + score: value}` for each of `AGREEMENT_SCORES` the section has (not None).
    """
    summary = summary or {}
    return {prefix + name: float(summary[name]) for name in AGREEMENT_SCORES if summary.get(name) is not None}


def agreement_text(summary: dict) -> str:
    """The section as a few lines for the console.

    Args:
        summary: `agreement_summary`'s record.

    Returns:
        The lines.
    """
    bounds = (summary.get("intervals") or {}).get("intervals") or {}

    def share(name: str) -> str:
        value, interval = summary[name], bounds.get(name)
        text = "n/a" if value is None else f"{value:.3f}"
        return text + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")

    return (
        f"annotator agreement ({summary['clips']} clips with votes): JS divergence "
        f"{share('js_divergence')} bits; accuracy {share('accuracy_high_agreement')} on "
        f"{summary['high_agreement_clips']} clips with agreement >= {summary['threshold']:.2f}, "
        f"{share('accuracy_low_agreement')} on {summary['low_agreement_clips']} below; "
        f"min_confidence={summary['min_confidence']:.2f} abstains on {summary['abstains_low_agreement']} of "
        f"the {summary['low_agreement_clips']} ambiguous clips (and {summary['abstains_high_agreement']} "
        "clear ones)"
        + (
            f"; [low, high]: {100 * summary['intervals']['confidence']:.0f} % bootstrap over "
            f"{summary['intervals']['speakers']} speakers"
            if bounds and any(bounds.values())
            else ""
        )
    )


def plot_agreement(table: pd.DataFrame, summary: dict, path: str | Path, title: str = "") -> None:
    """Plot each clip's confidence against its annotators' agreement, correct and wrong apart.

    Args:
        table: `agreement_table`'s rows.
        summary: `agreement_summary`'s record (for the threshold lines).
        path: the PNG to write.
        title: the plot's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    rng = np.random.default_rng(0)  # jitter: agreements take few values (k of n votes)
    jitter = rng.uniform(-0.01, 0.01, len(table))
    for correct, colour, name in ((True, "tab:green", "correct"), (False, "tab:red", "wrong")):
        rows = table["correct"].to_numpy() == correct
        ax.scatter(table["agreement"][rows] + jitter[rows], table["confidence"][rows], s=12, alpha=0.6,
                   color=colour, label=name)  # fmt: skip
    ax.axvline(summary["threshold"], color="grey", linestyle="--", linewidth=1, label="agreement threshold")
    ax.axhline(summary["min_confidence"], color="black", linestyle=":", linewidth=1, label="min_confidence")
    ax.set_xlabel("annotator agreement (share of the majority vote)")
    ax.set_ylabel("model confidence (top probability)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "Confidence against annotator agreement", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_agreement(
    table: pd.DataFrame, summary: dict, directory: str | Path, title: str = ""
) -> dict[str, Path]:
    """Write agreement.json, agreement.csv and agreement.png into `directory`.

    Args:
        table: `agreement_table`'s rows.
        summary: `agreement_summary`'s record.
        directory: the report folder.
        title: the plot's title.

    Returns:
        The paths by name (agreement, agreement_csv, agreement_png).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "agreement": directory / "agreement.json",
        "agreement_csv": directory / "agreement.csv",
        "agreement_png": directory / "agreement.png",
    }
    paths["agreement"].write_text(json.dumps(summary, indent=2))
    table.to_csv(paths["agreement_csv"], index=False, float_format="%.6f")
    plot_agreement(table, summary, paths["agreement_png"], title)
    return paths


def agreement_section(
    report: EvaluationReport | None,
    datamodule: SERDataModule,
    rows: np.ndarray,
    directory: str | Path,
    settings: dict | None = None,
    title: str = "Confidence against annotator agreement",
) -> tuple[dict, dict[str, Path]] | None:
    """The agreement section of a scored split, when its corpus has annotator votes: scored and written.

    The training run's test report and eval both come here. The speaker intervals use the
    bootstrap settings of the report's UA intervals, and are left out where the report has none.

    Args:
        report: the EvaluationReport (its files, labels, probabilities and clips, in `rows` order).
        datamodule: the set-up data module that was scored (its manifest's vote columns and label map).
        rows: the table row of each of the report's clips (the ReportCollector's `rows`).
        directory: the report folder the files go to.
        settings: the `agreement` config (threshold, min_confidence); None for the defaults.
        title: the plot's title.

    Returns:
        `agreement_summary`'s record and the written files (`write_agreement`), or None when
        there is no report or the corpus has no votes.
    """
    from ser_lightning.data.votes import has_votes, vote_distribution

    manifest = datamodule.manifest
    if report is None or manifest is None or not has_votes(manifest.table):
        return None
    settings = AgreementSettings(**dict(settings or {}))
    annotators, _ = vote_distribution(
        manifest.table.iloc[np.asarray(rows)], report.labels, datamodule.source.label_map
    )
    speakers = report.clips["speaker"].tolist() if report.clips is not None else None
    table = agreement_table(
        report.files, report.y_true, report.probabilities, annotators, report.labels, settings, speakers
    )
    record = report.intervals
    bootstrap = (
        BootstrapSettings(record["resamples"], record["seed"], record["confidence"]) if record else None
    )
    summary = agreement_summary(table, settings, int(len(annotators) - len(table)), bootstrap)
    return summary, write_agreement(table, summary, directory, title)
