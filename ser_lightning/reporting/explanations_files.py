"""The files of `eval explain=true`: class maps, band contributions, the embedding and its silhouettes.

What they hold and how to read them: `ser_lightning.reporting.explanations` and
docs/explanations.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ser_lightning.data.datamodule import SERDataModule
    from ser_lightning.model import SERModel
    from ser_lightning.reporting.explanations import ExplainSettings, Explanations

EXPLANATIONS_DIR = "explanations"


def silhouette(embeddings: np.ndarray, groups: np.ndarray) -> float | None:
    """The silhouette score of an embedding grouped by `groups` (scikit-learn, Euclidean).

    Args:
        embeddings: `(N, D)`.
        groups: one group name or index per row.

    Returns:
        The score in [-1, 1], or None when there are fewer than 2 groups or as many groups as rows
        (the score is not defined then).
    """
    from sklearn.metrics import silhouette_score

    n_groups = len(np.unique(groups))
    if n_groups < 2 or n_groups >= len(groups):
        return None
    return float(silhouette_score(embeddings, groups))


def write_explanations(
    explained: Explanations,
    datamodule: SERDataModule,
    model: SERModel,
    settings: ExplainSettings,
    output_dir: Path,
) -> dict:
    """Write the maps, band contributions, embedding and their plots into `output_dir/explanations/`.

    Args:
        explained: what `explain_clips` returned.
        datamodule: its data module (clips' files and speakers).
        model: the model (labels, feature names, whole clips or not).
        settings: the settings it ran with.
        output_dir: the eval run folder.

    Returns:
        The summary also written as `explanations.json`: clips per class, convergence, the
        silhouettes and the files written.
    """
    from sklearn.decomposition import PCA

    from ser_lightning.reporting.explanations_plots import plot_bands, plot_class_map, plot_embedding

    folder = Path(output_dir) / EXPLANATIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    labels = list(model.labels)
    table = datamodule.manifest.table.iloc[explained.rows]
    speakers = table["actor"].astype(str).to_numpy() if "actor" in table else np.full(len(table), "?")
    files: dict[str, str] = {}

    np.save(folder / "class_attributions.npy", explained.class_maps)
    files["class_attributions"] = str(folder / "class_attributions.npy")
    band_means = np.stack(
        [
            explained.band_contributions[explained.labels == c].mean(axis=0)
            if explained.counts[c]
            else np.zeros(explained.band_contributions.shape[1])
            for c in range(len(labels))
        ]
    )
    bands = pd.DataFrame(band_means, columns=[f"band_{i}" for i in range(band_means.shape[1])])
    bands.insert(0, "clips", explained.counts)
    bands.insert(0, "emotion", labels)
    bands.to_csv(folder / "band_contributions.csv", index=False)
    files["band_contributions"] = str(folder / "band_contributions.csv")
    time_axis = "fraction of the clip" if model.audio.whole_clips else "frame"
    for c, label in enumerate(labels):
        if explained.counts[c]:
            png = plot_class_map(
                explained.class_maps[c],
                label,
                int(explained.counts[c]),
                time_axis,
                folder / f"class_{label}.png",
            )
            files[f"class_{label}"] = str(png)
    files["bands"] = str(plot_bands(band_means, labels, explained.counts, folder / "bands.png"))

    dims = min(2, explained.embeddings.shape[0], explained.embeddings.shape[1])
    pca = PCA(n_components=dims).fit(explained.embeddings)
    projected = pca.transform(explained.embeddings)
    if dims < 2:
        projected = np.pad(projected, ((0, 0), (0, 2 - dims)))
    emotion_score = silhouette(explained.embeddings, explained.labels)
    speaker_score = silhouette(explained.embeddings, speakers)
    frame = pd.DataFrame(
        {
            "row": explained.rows,
            "file": table["path"].astype(str).to_numpy() if "path" in table else explained.rows,
            "speaker": speakers,
            "emotion": [labels[i] for i in explained.labels],
            "predicted": [labels[i] for i in explained.predicted],
            "pc1": projected[:, 0],
            "pc2": projected[:, 1],
            "logit_gap": explained.logit_gaps,
            "convergence_delta": explained.deltas,
        }
    )
    frame.to_csv(folder / "embedding.csv", index=False)
    np.save(folder / "embedding.npy", explained.embeddings)
    files["embedding_csv"] = str(folder / "embedding.csv")
    files["embedding"] = str(folder / "embedding.npy")
    variance = [float(v) for v in pca.explained_variance_ratio_]
    files["embedding_plot"] = str(
        plot_embedding(frame, labels, variance, emotion_score, speaker_score, folder / "embedding.png")
    )
    relative = np.abs(explained.deltas) / np.maximum(np.abs(explained.logit_gaps), 1e-12)
    summary = {
        "method": "integrated gradients of the true class logit, all-zero (corpus mean) baseline",
        "settings": asdict(settings),
        "clips": int(len(explained.rows)),
        "clips_per_class": {label: int(n) for label, n in zip(labels, explained.counts, strict=True)},
        "input_shape": list(explained.class_maps.shape[1:]),
        "time_axis": time_axis,
        "convergence_delta": {
            "max_abs": float(np.abs(explained.deltas).max()),
            "median_relative_to_logit_gap": float(np.median(relative)),
        },
        "embedding": {
            "layer": "input of the final Linear layer",
            "dimensions": int(explained.embeddings.shape[1]),
            "projection": "PCA",
            "explained_variance": variance,
            "silhouette_emotion": emotion_score,
            "silhouette_speaker": speaker_score,
            "clusters_by": _clusters_by(emotion_score, speaker_score),
        },
        "files_written": files,
    }
    (folder / "explanations.json").write_text(json.dumps(summary, indent=2))
    return summary


def _clusters_by(emotion: float | None, speaker: float | None) -> str:
    if emotion is None or speaker is None:
        return "undetermined (fewer than two emotions or speakers among the explained clips)"
    return "speaker" if speaker > emotion else "emotion"
