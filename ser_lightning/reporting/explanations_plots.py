"""The plots of `eval explain=true`: class attribution maps, band contributions, the embedding."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # reports are files; no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _symmetric_limit(values: np.ndarray) -> float:
    limit = float(np.abs(values).max()) if values.size else 0.0
    return limit if limit > 0 else 1.0


def plot_class_map(class_map: np.ndarray, label: str, clips: int, time_axis: str, path: Path) -> Path:
    """Heat map of one class's mean attribution, feature bands by time (summed over channels).

    Args:
        class_map: `(C, F, T)` mean attributions of the class.
        label: the class.
        clips: how many clips the mean is over.
        time_axis: what the columns are ("frame", or "fraction of the clip" for whole clips).
        path: the PNG to write.

    Returns:
        `path`.
    """
    image = class_map.sum(axis=0)
    limit = _symmetric_limit(image)
    fig, ax = plt.subplots(figsize=(7, 4))
    extent = None
    if time_axis != "frame":
        extent = (0.0, 1.0, -0.5, image.shape[0] - 0.5)
    shown = ax.imshow(
        image, origin="lower", aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, extent=extent
    )
    ax.set_xlabel(time_axis)
    ax.set_ylabel("feature band (mel band for log-mel)")
    ax.set_title(f"{label}: integrated gradients of the true class, mean of {clips} clips")
    fig.colorbar(shown, ax=ax, label="attribution (logit units)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bands(band_means: np.ndarray, labels: list[str], counts: np.ndarray, path: Path) -> Path:
    """Every class's contribution of each band to its logit (attributions summed over time).

    Args:
        band_means: `(K, F)` mean over a class's clips of each band's summed attribution.
        labels: the classes.
        counts: clips per class (classes without any are shown blank).
        path: the PNG to write.

    Returns:
        `path`.
    """
    shown_values = np.where(counts[:, None] > 0, band_means, np.nan)
    limit = _symmetric_limit(np.nan_to_num(shown_values))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(labels) + 1.8))
    shown = ax.imshow(
        shown_values, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
    )
    ax.set_yticks(range(len(labels)), [f"{label} ({n})" for label, n in zip(labels, counts, strict=True)])
    ax.set_xlabel("feature band (mel band for log-mel), low to high")
    ax.set_title("Each band's share of the true class logit (integrated gradients summed over time)")
    fig.colorbar(shown, ax=ax, label="logit units")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_embedding(
    frame: pd.DataFrame,
    labels: list[str],
    variance: list[float],
    emotion_score: float | None,
    speaker_score: float | None,
    path: Path,
) -> Path:
    """The penultimate layer's 2-D PCA projection, coloured by emotion (left) and by speaker (right).

    Args:
        frame: one row per clip with `pc1`, `pc2`, `emotion` and `speaker`.
        labels: the classes, in legend order.
        variance: the share of variance each axis holds.
        emotion_score: the embedding's silhouette by emotion (None: undefined).
        speaker_score: its silhouette by speaker.
        path: the PNG to write.

    Returns:
        `path`.
    """

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharex=True, sharey=True)
    for ax, column, order, score in (
        (axes[0], "emotion", labels, emotion_score),
        (axes[1], "speaker", sorted(frame["speaker"].unique()), speaker_score),
    ):
        colours = plt.get_cmap("tab10" if len(order) <= 10 else "tab20")
        for i, group in enumerate(order):
            part = frame[frame[column] == group]
            if len(part):
                ax.scatter(part["pc1"], part["pc2"], s=22, color=colours(i % colours.N), label=str(group))
        ax.set_title(f"by {column}: silhouette {fmt(score)}")
        ax.set_xlabel(f"PC1 ({100 * variance[0]:.0f} % of variance)" if variance else "PC1")
        ax.legend(fontsize=7, ncol=2 if len(order) > 8 else 1, loc="best")
    axes[0].set_ylabel(f"PC2 ({100 * variance[1]:.0f} % of variance)" if len(variance) > 1 else "PC2")
    verdict = (
        "clusters by speaker more than by emotion"
        if emotion_score is not None and speaker_score is not None and speaker_score > emotion_score
        else "clusters by emotion more than by speaker"
        if emotion_score is not None and speaker_score is not None
        else "too few groups to compare"
    )
    fig.suptitle(f"Penultimate layer of {len(frame)} clips (PCA): {verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
