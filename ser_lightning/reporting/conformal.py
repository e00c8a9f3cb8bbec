"""How the conformal prediction sets did on the test speakers: coverage and set size, and whether it holds.

Given the threshold stored in the checkpoint (`ser_lightning.conformal`), every test clip gets
its set of emotions; the report counts, overall, per gender, per speaker and per true emotion:

- coverage: the share of clips whose set holds the true emotion;
- its 95 % Clopper-Pearson interval (exact binomial, clips counted as independent draws);
- the mean set size (emotions per set);
- whether the coverage **holds**: the interval's upper end is at or above the target, i.e. the
  clips give no evidence, at the 2.5 % level one-sided, that the group's coverage is below the
  target. A group of few clips thus "holds" unless it falls clearly short; a row that does not
  hold is a group the sets fail.

The guarantee of split conformal prediction is marginal: over new clips drawn like the
calibration clips, not for each speaker or emotion. The per-group rows show how far each group is
from it; a speaker whose clips the model finds hard falls short even when the overall coverage is
exact.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402

from ser_lightning.conformal import prediction_sets  # noqa: E402

# groupings of the table, in order; "emotion" groups by the true emotion
GROUPINGS = ("overall", "gender", "speaker", "emotion")
CONFIDENCE = 0.95
HOLDS_RULE = (
    "holds: the upper end of the 95 % Clopper-Pearson interval of the group's coverage is at or above "
    "the target (no evidence, one-sided at 2.5 %, that the coverage falls short)"
)


def clopper_pearson(covered: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval of a binomial proportion.

    Args:
        covered: the successes.
        n: the trials (at least 1).
        confidence: the two-sided confidence level.

    Returns:
        The lower and upper ends: 0 and 1 at the extremes.
    """
    from scipy.stats import beta

    tail = (1.0 - confidence) / 2
    low = 0.0 if covered == 0 else float(beta.ppf(tail, covered, n - covered + 1))
    high = 1.0 if covered == n else float(beta.ppf(1.0 - tail, covered + 1, n - covered))
    return low, high


def coverage_row(by: str, group: str, covered: np.ndarray, sizes: np.ndarray, target: float) -> dict:
    """Score one group of clips.

    Args:
        by: the grouping ("overall", "gender", "speaker", "emotion").
        group: the group's name.
        covered: for each clip of the group, whether its set holds the true emotion.
        sizes: each clip's set size.
        target: the coverage the sets were fitted for.

    Returns:
        `by`, `group`, files, covered, coverage, ci_low, ci_high, mean_set_size and holds.
    """
    n, hits = int(len(covered)), int(covered.sum())
    low, high = clopper_pearson(hits, n)
    return {
        "by": by,
        "group": group,
        "files": n,
        "covered": hits,
        "coverage": hits / n,
        "ci_low": low,
        "ci_high": high,
        "mean_set_size": float(sizes.mean()),
        "holds": bool(high >= target),
    }


def coverage_table(
    members: ArrayLike, y_true: ArrayLike, target: float, clips: pd.DataFrame | None, labels: list[str]
) -> pd.DataFrame:
    """Coverage and set size overall, per gender, per speaker and per true emotion.

    Args:
        members: `(N, K)` set membership (`ser_lightning.conformal.prediction_sets`).
        y_true: the true emotions `(N,)`.
        target: the coverage the sets were fitted for.
        clips: one row per clip with `speaker` (and `gender`), or None for the overall and
            per-emotion rows only.
        labels: the K emotions.

    Returns:
        One row per group (see `coverage_row`), overall first.
    """
    members = np.asarray(members, dtype=bool)
    y_true = np.asarray(y_true, dtype=np.int64)
    covered = members[np.arange(len(y_true)), y_true]
    sizes = members.sum(axis=1)
    rows = [coverage_row("overall", "all", covered, sizes, target)]
    for by in ("gender", "speaker"):
        if clips is None or by not in clips:
            continue
        values = clips[by].astype(str).to_numpy()
        for group in sorted(set(values)):
            mask = values == group
            rows.append(coverage_row(by, group, covered[mask], sizes[mask], target))
    for k, name in enumerate(labels):
        mask = y_true == k
        if mask.any():
            rows.append(coverage_row("emotion", name, covered[mask], sizes[mask], target))
    return pd.DataFrame(rows)


def conformal_summary(
    probabilities: ArrayLike,
    y_true: ArrayLike,
    record: dict,
    clips: pd.DataFrame | None,
    labels: list[str],
) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """Score a stored conformal record's sets on labelled clips.

    Args:
        probabilities: `(N, K)` calibrated probabilities.
        y_true: the true emotions `(N,)`.
        record: the checkpoint's conformal record (`calibration.conformal`).
        clips: the clips' speakers and genders, or None.
        labels: the K emotions.

    Returns:
        The summary for metrics.json (target, threshold, the overall row, how many genders and
        speakers hold, the set sizes' counts, the rule for "holds", and the calibration clips and
        speakers), the coverage table, and the `(N, K)` set membership.
    """
    target = float(record["coverage"])
    members = prediction_sets(probabilities, float(record["threshold"]))
    table = coverage_table(members, y_true, target, clips, labels)
    overall = table.iloc[0]
    sizes, counts = np.unique(members.sum(axis=1), return_counts=True)
    summary = {
        "target": target,
        "score": record.get("score"),
        "threshold": float(record["threshold"]),
        "min_probability": 1.0 - float(record["threshold"]),
        "coverage": float(overall["coverage"]),
        "ci_low": float(overall["ci_low"]),
        "ci_high": float(overall["ci_high"]),
        "mean_set_size": float(overall["mean_set_size"]),
        "holds": bool(overall["holds"]),
        "guarantee": [target, float(record.get("coverage_upper_bound", 1.0))],
        "set_sizes": {str(int(s)): int(c) for s, c in zip(sizes, counts, strict=True)},
        "calibration_files": int(record.get("files", 0)),
        "calibration_speakers": int(record.get("speakers", 0)),
        "calibration_speakers_in_training": int(record.get("speakers_in_training", 0)),
        "calibration_speakers_in_test": int(record.get("speakers_in_test", 0)),
        "holds_rule": HOLDS_RULE,
    }
    for by in ("gender", "speaker", "emotion"):
        rows = table[table["by"] == by]
        if len(rows):
            summary[f"{by}s_holding"] = f"{int(rows['holds'].sum())} of {len(rows)}"
    return summary, table, members


def plot_coverage(table: pd.DataFrame, target: float, path: str | Path, title: str = "") -> None:
    """Coverage of each speaker (and gender, overall) with its interval, beside its mean set size.

    Args:
        table: the coverage table (`coverage_table`).
        target: the coverage the sets were fitted for (a dashed line).
        path: the PNG to write.
        title: shown above the plot.
    """
    rows = table[table["by"].isin(("overall", "gender", "speaker"))].reset_index(drop=True)
    names = [r.group if r.by != "speaker" else f"spk {r.group}" for r in rows.itertuples()]
    y = np.arange(len(rows))
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(10, 1.2 + 0.32 * len(rows)), sharey=True, constrained_layout=True
    )
    colours = ["#2a7ab9" if h else "#c0392b" for h in rows["holds"]]
    errors = np.vstack([rows["coverage"] - rows["ci_low"], rows["ci_high"] - rows["coverage"]])
    left.barh(y, rows["coverage"], color=colours, xerr=errors, capsize=2)
    left.axvline(target, color="k", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    left.set_xlim(0, 1.02)
    left.set_xlabel("coverage (set holds the true emotion), 95 % interval; red: does not hold")
    left.legend(loc="lower left")
    left.set_yticks(y, names)
    left.invert_yaxis()
    right.barh(y, rows["mean_set_size"], color="#999999")
    right.set_xlabel("mean set size (emotions)")
    fig.suptitle(title or "conformal prediction sets on the test clips")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def conformal_cells(summary: dict) -> tuple[str, str]:
    """The console row of the sets' overall coverage: its name and its value.

    Args:
        summary: the report's conformal summary (`conformal_summary`).

    Returns:
        The row's name and text: coverage with its interval, whether it holds, the mean set size.
    """
    holds = "holds" if summary["holds"] else "falls short"
    return (
        f"conformal sets ({summary['target']:.0%} target)",
        f"coverage {summary['coverage']:.3f} [{summary['ci_low']:.3f}, {summary['ci_high']:.3f}] "
        f"({holds}), mean set size {summary['mean_set_size']:.2f}",
    )


def conformal_note(summary: dict) -> str:
    """One line under the table: which groups hold, and on which speakers the sets were fitted.

    Args:
        summary: the report's conformal summary (`conformal_summary`).

    Returns:
        The line.
    """
    groups = ", ".join(
        f"{summary[key]} {name}"
        for key, name in (("genders_holding", "genders"), ("speakers_holding", "speakers"))
        if key in summary
    )
    shared = summary["calibration_speakers_in_training"] + summary["calibration_speakers_in_test"]
    where = (
        f"fitted on {summary['calibration_files']} validation clips of {summary['calibration_speakers']} speakers"
        + (
            " (none of them a training or test speaker)"
            if not shared
            else f" ({summary['calibration_speakers_in_training']} also in training, "
            f"{summary['calibration_speakers_in_test']} also in test: speakers leak, coverage is optimistic)"
        )
    )
    return (
        f"conformal sets: every emotion of probability >= {summary['min_probability']:.3f}; "
        + (f"coverage holds for {groups}; " if groups else "")
        + where
    )


def write_conformal(
    table: pd.DataFrame, summary: dict, directory: str | Path, title: str = ""
) -> dict[str, Path]:
    """Write the coverage table (conformal.csv) and its plot (conformal.png).

    Args:
        table: the coverage table.
        summary: the conformal summary (its target).
        directory: the report's folder.
        title: the plot's title.

    Returns:
        The paths, as `conformal` and `conformal_png`.
    """
    directory = Path(directory)
    paths = {"conformal": directory / "conformal.csv", "conformal_png": directory / "conformal.png"}
    table.to_csv(paths["conformal"], index=False, float_format="%.6f")
    plot_coverage(table, summary["target"], paths["conformal_png"], title)
    return paths
