"""The dimensional part of a test report: CCC, Pearson r and MAE per dimension, with speaker intervals.

Scores are those of `ser_lightning.metrics.dimension_scores`, on the corpus's rating scale. The
intervals resample test speakers as UA's do (`reporting/intervals.py`): each resample draws the
speakers with replacement and takes all clips of each drawn speaker, and every score of a
resample comes from the summed moments of the drawn speakers' clips (n, sums of x, y, x^2, y^2,
xy and |x - y|), which give exactly the definitions' values for that multiset of clips.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.metrics import DIMENSION_METRIC_DEFINITIONS, dimension_scores
from ser_lightning.reporting.intervals import DEFAULT_BOOTSTRAP, BootstrapSettings, _draw_weights


@dataclass
class DimensionReport:
    """The dimension scores of one test stage.

    Attributes:
        scores: one row per dimension: ccc, r, mae, and each one's `_low` / `_high` interval bound.
        predictions: one row per clip: file, speaker, then `<dimension>` and `<dimension>_true`.
        scale: the rating scale `{"low", "high"}` scores and predictions are on.
        bootstrap: how the intervals were drawn (method, resamples, seed, confidence, speakers).
    """

    scores: pd.DataFrame
    predictions: pd.DataFrame
    scale: dict
    bootstrap: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """The scores as plain numbers for summary.json and the logged `test/` metrics.

        Returns:
            `{"ccc": mean CCC, "ccc_<dimension>": ..., "r_<dimension>": ..., "mae_<dimension>": ...,
            with `_low` / `_high` bounds where there are intervals}`.
        """
        values = {"ccc": float(self.scores["ccc"].mean())}
        for name, row in self.scores.iterrows():
            for column, value in row.items():
                if pd.notna(value):
                    metric, _, bound = column.partition("_")
                    values[f"{metric}_{name}" + (f"_{bound}" if bound else "")] = float(value)
        return values


def _moments(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y, np.abs(x - y)])


def _scores_of_moments(sums: np.ndarray) -> dict[str, np.ndarray]:
    """CCC, r and MAE of summed moments `(..., 7, d)` (the definitions of ser_lightning.metrics).

    Returns:
        `{"ccc", "r", "mae"}`, each `(..., d)`.
    """
    n = np.maximum(sums[..., 0, :], 1.0)
    mean_x, mean_y = sums[..., 1, :] / n, sums[..., 2, :] / n
    var_x = np.maximum(sums[..., 3, :] / n - mean_x**2, 0.0)
    var_y = np.maximum(sums[..., 4, :] / n - mean_y**2, 0.0)
    cov = sums[..., 5, :] / n - mean_x * mean_y
    ccc_denominator = var_x + var_y + (mean_x - mean_y) ** 2
    scale = np.sqrt(var_x * var_y)
    return {
        "ccc": np.where(
            ccc_denominator > 0, 2 * cov / np.where(ccc_denominator > 0, ccc_denominator, 1), 0.0
        ),
        "r": np.where(scale > 0, cov / np.where(scale > 0, scale, 1), 0.0),
        "mae": sums[..., 6, :] / n,
    }


def dimension_report(
    files: list[str],
    speakers: list[str],
    predicted: np.ndarray,
    target: np.ndarray,
    scale: dict,
    bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP,
) -> DimensionReport:
    """Score predicted against rated dimensions, with speaker-bootstrap intervals.

    Args:
        files: each clip's file (relative to the corpus root).
        speakers: each clip's speaker.
        predicted: `(clips, 3)` predictions on the corpus's scale.
        target: `(clips, 3)` ratings on the same scale.
        scale: the scale `{"low", "high"}`.
        bootstrap: resamples, seed and confidence level.

    Returns:
        The report.
    """
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    scores = dimension_scores(predicted, target, DIMENSIONS)
    ids, index = np.unique(np.asarray([str(s) for s in speakers]), return_inverse=True)
    record = bootstrap.speaker_record(len(ids))
    if len(ids) >= 2:
        per_speaker = np.zeros((len(ids), 7, predicted.shape[1]))
        np.add.at(per_speaker, index, np.moveaxis(_moments(predicted, target), 1, 0))
        weights = _draw_weights(len(ids), bootstrap.resamples, np.random.default_rng(bootstrap.seed))
        resampled = _scores_of_moments(np.einsum("bs,skd->bkd", weights, per_speaker))
        tail = 100.0 * (1.0 - bootstrap.confidence) / 2.0
        for metric, values in resampled.items():
            low, high = np.percentile(values, [tail, 100.0 - tail], axis=0)
            scores[f"{metric}_low"], scores[f"{metric}_high"] = low, high
    else:
        record["note"] = "one test speaker: no interval over speakers"
    frame = pd.DataFrame({"file": files, "speaker": [str(s) for s in speakers]})
    for i, name in enumerate(DIMENSIONS):
        frame[name], frame[f"{name}_true"] = predicted[:, i], target[:, i]
    return DimensionReport(scores, frame, dict(scale), record)


def write_dimension_report(report: DimensionReport, folder: Path) -> dict[str, Path]:
    """Write the scores, each clip's predictions and the rating scale into `folder`.

    Args:
        report: the dimension report.
        folder: the report folder (created when missing), e.g. `<run>/test_report`.

    Returns:
        The written files: `dimensions` (dimensions.csv: ccc, r, mae and their intervals per
        dimension), `predictions` (dimension_predictions.csv) and `record` (dimensions.json:
        scale, bootstrap, metric definitions and the summary values).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = {
        "dimensions": folder / "dimensions.csv",
        "predictions": folder / "dimension_predictions.csv",
        "record": folder / "dimensions.json",
    }
    report.scores.to_csv(written["dimensions"], float_format="%.6f")
    report.predictions.to_csv(written["predictions"], index=False, float_format="%.6f")
    record = {
        "scale": report.scale,
        "bootstrap": report.bootstrap,
        "definitions": DIMENSION_METRIC_DEFINITIONS,
        "scores": report.summary(),
    }
    written["record"].write_text(json.dumps(record, indent=2) + "\n")
    return written


def print_dimension_report(report: DimensionReport, title: str) -> None:
    """Print the scores per dimension, with their speaker intervals, as a table.

    Args:
        report: the dimension report.
        title: the table's title.
    """
    table = Table(title=title)
    for column in ("dimension", "CCC", "Pearson r", "MAE"):
        table.add_column(column)
    for name, row in report.scores.iterrows():
        cells = []
        for metric in ("ccc", "r", "mae"):
            interval = (
                f" [{row[metric + '_low']:.3f}, {row[metric + '_high']:.3f}]"
                if f"{metric}_low" in row
                else ""
            )
            cells.append(f"{row[metric]:.3f}{interval}")
        table.add_row(str(name), *cells)
    Console().print(table)
    scale = report.scale
    Console().print(
        f"mean CCC {report.summary()['ccc']:.3f}; ratings on the scale [{scale['low']:g}, {scale['high']:g}]"
    )


def mean_ccc_over_runs(
    runs: list[pd.DataFrame], bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP
) -> dict[str, dict]:
    """Per dimension: the mean test CCC over runs (folds, seeds) and its speaker-bootstrap interval.

    Each resample draws every run's test speakers again within the run (all clips of a drawn
    speaker), scores each run and averages over runs: the interval of the mean a study reports.

    Args:
        runs: each run's `dimension_predictions.csv` (`speaker`, `<dimension>`, `<dimension>_true`).
        bootstrap: resamples, seed and confidence level.

    Returns:
        `{dimension: {"mean": float, "interval": [low, high] or None}}`; None when no run has
        two test speakers.
    """
    rng = np.random.default_rng(bootstrap.seed)
    points, draws, speakers = [], [], []
    for frame in runs:
        predicted = frame[list(DIMENSIONS)].to_numpy(np.float64)
        target = frame[[f"{name}_true" for name in DIMENSIONS]].to_numpy(np.float64)
        ids, index = np.unique(frame["speaker"].astype(str).to_numpy(), return_inverse=True)
        per_speaker = np.zeros((len(ids), 7, len(DIMENSIONS)))
        np.add.at(per_speaker, index, np.moveaxis(_moments(predicted, target), 1, 0))
        points.append(_scores_of_moments(per_speaker.sum(axis=0))["ccc"])
        weights = _draw_weights(len(ids), bootstrap.resamples, rng)
        draws.append(_scores_of_moments(np.einsum("bs,skd->bkd", weights, per_speaker))["ccc"])
        speakers.append(len(ids))
    point, resampled = np.mean(points, axis=0), np.mean(draws, axis=0)
    tail = 100.0 * (1.0 - bootstrap.confidence) / 2.0
    low, high = np.percentile(resampled, [tail, 100.0 - tail], axis=0)
    single = all(n < 2 for n in speakers)
    return {
        name: {"mean": float(point[i]), "interval": None if single else [float(low[i]), float(high[i])]}
        for i, name in enumerate(DIMENSIONS)
    }
