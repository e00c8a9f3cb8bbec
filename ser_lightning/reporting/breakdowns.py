"""Scores per group of test clips: per gender, per speaker, per intensity, and the gender gap.

A single UA hides whom a model fails: one speaker at chance, or one gender 15 points below the
other. Each group's UA, WA and per-emotion recall are the ser_lightning.metrics definitions
applied to the confusion matrix of the group's clips.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from numpy.typing import ArrayLike  # noqa: E402

from ser_lightning.metrics import confusion_counts, per_class_recall, unweighted_accuracy, weighted_accuracy  # noqa: E402

# clip columns the breakdowns group by, in the order of the table and the plot
BREAKDOWN_COLUMNS = ("gender", "speaker", "intensity")
GENDERS = ("female", "male")


def breakdown_table(
    y_true: ArrayLike, y_pred: ArrayLike, clips: pd.DataFrame, labels: list[str]
) -> pd.DataFrame:
    """Score each gender, speaker and intensity group of the clips on its own.

    Args:
        y_true: true label indices, one per clip.
        y_pred: predicted label indices, one per clip.
        clips: one row per clip; its `gender`, `speaker` and `intensity` columns (those present)
            define the groups.
        labels: the emotion names, in label-index order.

    Returns:
        One row per (grouping, group): `by`, `group`, files, speakers, UA, accuracy (WA) and
        `recall_<emotion>` (empty for emotions the group has no clip of).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rows = []
    for column in BREAKDOWN_COLUMNS:
        if column not in clips:
            continue
        values = clips[column].astype(str).to_numpy()
        for group in sorted(set(values)):
            mask = values == group
            confusion = confusion_counts(y_true[mask], y_pred[mask], len(labels))
            recall = per_class_recall(confusion)
            present = confusion.sum(axis=1) > 0
            rows.append(
                {
                    "by": column,
                    "group": group,
                    "files": int(mask.sum()),
                    "speakers": int(clips.loc[mask, "speaker"].nunique()) if "speaker" in clips else np.nan,
                    "ua": unweighted_accuracy(confusion),
                    "accuracy": weighted_accuracy(confusion),
                    # recall of emotions the group has no file of is left empty, not 0
                    **{
                        f"recall_{name}": (recall[k] if present[k] else np.nan)
                        for k, name in enumerate(labels)
                    },
                }
            )
    return pd.DataFrame(rows)


def gender_gap(table: pd.DataFrame) -> dict | None:
    """UA of women and men and the difference (female minus male).

    Args:
        table: a `breakdown_table`.

    Returns:
        `ua_female`, `ua_male` and `female_minus_male`, or None unless the table scores both genders.
    """
    genders = (
        table[table["by"] == "gender"].set_index("group")["ua"] if len(table) else pd.Series(dtype=float)
    )
    if not all(g in genders.index for g in GENDERS):
        return None
    female, male = float(genders["female"]), float(genders["male"])
    return {"ua_female": female, "ua_male": male, "female_minus_male": female - male}


def plot_breakdowns(table: pd.DataFrame, path: str | Path, overall_ua: float, title: str = "") -> None:
    """UA per gender, per speaker and per intensity, beside the overall UA."""
    groupings = [c for c in BREAKDOWN_COLUMNS if c in set(table["by"])]
    if not groupings:
        return
    widths = [max(2, len(table[table["by"] == c])) for c in groupings]
    fig, axes = plt.subplots(
        1,
        len(groupings),
        figsize=(3 + 0.45 * sum(widths), 4),
        gridspec_kw={"width_ratios": widths},
        squeeze=False,
    )
    for ax, column in zip(axes[0], groupings, strict=True):
        part = table[table["by"] == column]
        ax.bar(range(len(part)), part["ua"], color="#4C72B0")
        ax.set_xticks(range(len(part)), part["group"], rotation=45 if column == "speaker" else 0, fontsize=8)
        ax.axhline(
            overall_ua, color="black", linestyle="--", linewidth=1, label=f"all clips {overall_ua:.3f}"
        )
        ax.set_ylim(0, 1)
        ax.set_title(column, fontsize=9)
        ax.legend(fontsize=7, loc="upper right") if column == "speaker" or len(groupings) == 1 else None
    axes[0][0].set_ylabel("unweighted accuracy (UA)")
    fig.suptitle(f"{title}\nUA per gender, speaker and intensity (dashed: all clips)".strip(), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
