"""What drives a baseline's predictions: permutation importance per feature and per class.

Each feature column of the scored split is shuffled `n_repeats` times (scikit-learn's
`permutation_importance`); its importance is the mean drop of a score: UA for the feature
overall, and each class's recall for that class (the same shuffles serve every score). A large
drop in one class's recall says the feature separates that class ("F0 mean drives angry").
The table lists every feature; the plot shows the `top` features by UA drop, with the per-class
drops beside them as a heat map.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.metrics import make_scorer, recall_score  # noqa: E402


def importance_table(
    pipeline: Any,
    features: np.ndarray,
    labels: np.ndarray,
    feature_names: Sequence[str],
    label_names: Sequence[str],
    n_repeats: int = 5,
    seed: int = 0,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Permutation importance of every feature for UA and for each class's recall.

    Args:
        pipeline: A fitted pipeline predicting label indices.
        features: `(N, D)` the scored split's features, as the pipeline takes them.
        labels: `(N,)` true label indices.
        feature_names: The D feature names.
        label_names: The names of the label indices.
        n_repeats: Shuffles per feature.
        seed: The shuffles' random state.
        n_jobs: Parallel jobs (None: one).

    Returns:
        One row per feature, by UA drop (largest first): `feature`, `ua_drop`, `ua_drop_std`,
        and `recall_drop_<label>` for each label present in `labels`.
    """
    present = [int(k) for k in np.unique(labels)]
    scoring = {"ua": "balanced_accuracy"}
    for k in present:
        scoring[f"recall_drop_{label_names[k]}"] = make_scorer(
            recall_score, labels=[k], average="macro", zero_division=0
        )
    result = permutation_importance(
        pipeline, features, labels, scoring=scoring, n_repeats=n_repeats, random_state=seed, n_jobs=n_jobs
    )
    table = pd.DataFrame({"feature": list(feature_names)})
    table["ua_drop"] = result["ua"].importances_mean
    table["ua_drop_std"] = result["ua"].importances_std
    for name in scoring:
        if name != "ua":
            table[name] = result[name].importances_mean
    return table.sort_values("ua_drop", ascending=False, kind="stable").reset_index(drop=True)


def plot_importance(table: pd.DataFrame, path: str | Path, top: int = 20, title: str = "") -> Path:
    """Draw the `top` features by UA drop, and their per-class recall drops as a heat map.

    Args:
        table: The `importance_table`.
        path: The PNG to write.
        top: How many features to show.
        title: The figure's title.

    Returns:
        The path written.
    """
    shown = table.head(top).iloc[::-1]
    classes = [c for c in table.columns if c.startswith("recall_drop_")]
    height = max(3.0, 0.3 * len(shown) + 1.2)
    fig, (bars, heat) = plt.subplots(
        1,
        2,
        figsize=(7 + 0.5 * len(classes), height),
        gridspec_kw={"width_ratios": [2, max(1, len(classes) // 2)]},
    )
    bars.barh(shown["feature"], shown["ua_drop"], xerr=shown["ua_drop_std"], color="tab:blue")
    bars.set_ylim(-0.5, len(shown) - 0.5)  # one row per heat-map row
    bars.set_xlabel("UA drop when shuffled")
    bars.tick_params(axis="y", labelsize=7)
    # imshow draws its first row at the top, barh its first bar at the bottom
    values = shown[classes].to_numpy()[::-1] if classes else np.zeros((len(shown), 0))
    limit = float(np.abs(values).max()) if values.size else 1.0
    image = heat.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    heat.set_xticks(range(len(classes)), [c.removeprefix("recall_drop_") for c in classes], rotation=45)
    heat.set_yticks([])
    heat.set_title("recall drop per class", fontsize=9)
    fig.colorbar(image, ax=heat, fraction=0.08)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
