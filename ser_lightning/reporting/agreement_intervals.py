"""Speaker-bootstrap intervals of the agreement section's scores, for one run and for the mean over runs.

The scores are those of `reporting.agreement.agreement_summary`: the mean Jensen-Shannon
divergence between predicted and annotator distributions, and the accuracy on high- and on
low-agreement clips. As UA's intervals (`reporting/intervals.py`), a resample draws the test
speakers with replacement and takes all clips of each drawn speaker; each score of a resample
comes from the drawn speakers' summed counts (clips, summed divergence, clips of each group and
their correct ones), which give exactly the scores of that multiset of clips. A resample that
holds no clip of a group (no low-agreement clip, say) has no accuracy for it and is left out of
that group's interval.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ser_lightning.reporting.intervals import (
    DEFAULT_BOOTSTRAP,
    BootstrapSettings,
    _draw_weights,
    _percentile_interval,
)

# the scores given with an interval, by their key in the agreement section
AGREEMENT_SCORES: tuple[str, ...] = ("js_divergence", "accuracy_high_agreement", "accuracy_low_agreement")


def speaker_sums(table: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Each speaker's counts in an agreement table (`agreement_table` with a `speaker` column).

    Args:
        table: one row per clip: speaker, js_divergence, high_agreement, correct.

    Returns:
        The sorted speaker ids and `(S, 6)` sums per speaker: clips, summed divergence,
        high-agreement clips, correct ones among them, low-agreement clips, correct ones among them.
    """
    ids, index = np.unique(table["speaker"].astype(str).to_numpy(), return_inverse=True)
    high = table["high_agreement"].to_numpy(dtype=bool)
    correct = table["correct"].to_numpy(dtype=bool)
    columns = np.stack(
        [
            np.ones(len(table)),
            table["js_divergence"].to_numpy(dtype=np.float64),
            high,
            high & correct,
            ~high,
            ~high & correct,
        ],
        axis=1,
    ).astype(np.float64)
    sums = np.zeros((len(ids), columns.shape[1]))
    np.add.at(sums, index, columns)
    return ids.tolist(), sums


def scores_of_sums(sums: np.ndarray) -> np.ndarray:
    """The three scores of summed counts `(..., 6)` (`speaker_sums`' columns).

    Args:
        sums: the counts, summed over the clips scored.

    Returns:
        `(..., 3)`: mean divergence, accuracy on high- and on low-agreement clips (NaN where the
        group holds no clip), in `AGREEMENT_SCORES` order.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.stack(
            [
                np.where(sums[..., 0] > 0, sums[..., 1] / sums[..., 0], np.nan),
                np.where(sums[..., 2] > 0, sums[..., 3] / sums[..., 2], np.nan),
                np.where(sums[..., 4] > 0, sums[..., 5] / sums[..., 4], np.nan),
            ],
            axis=-1,
        )


def _interval(values: np.ndarray, confidence: float) -> list[float] | None:
    finite = values[np.isfinite(values)]
    return _percentile_interval(finite, confidence) if len(finite) else None


def agreement_bootstrap(table: pd.DataFrame, settings: BootstrapSettings = DEFAULT_BOOTSTRAP) -> dict:
    """Percentile intervals of the section's scores by a bootstrap over the table's speakers.

    Args:
        table: `agreement_table`'s rows, with each clip's `speaker`.
        settings: resamples, seed and confidence level (those of the report's UA intervals).

    Returns:
        The method, resamples, seed, confidence and number of speakers, with `intervals` mapping
        each of `AGREEMENT_SCORES` to `[low, high]` (None with one speaker, with a `note`, or when
        no resample holds a clip of the group).
    """
    ids, sums = speaker_sums(table)
    record = settings.speaker_record(len(ids))
    if len(ids) < 2:
        return {
            **record,
            "intervals": dict.fromkeys(AGREEMENT_SCORES),
            "note": "one test speaker: no interval over speakers",
        }
    weights = _draw_weights(len(ids), settings.resamples, np.random.default_rng(settings.seed))
    resampled = scores_of_sums(weights @ sums)  # (B, 3)
    return {
        **record,
        "intervals": {
            name: _interval(resampled[:, i], settings.confidence) for i, name in enumerate(AGREEMENT_SCORES)
        },
    }


def mean_agreement_over_runs(
    tables: Sequence[pd.DataFrame], settings: BootstrapSettings = DEFAULT_BOOTSTRAP
) -> dict[str, dict]:
    """Per score: the mean over runs (folds, seeds) and its speaker-bootstrap interval.

    Each resample draws every run's test speakers again within the run (all clips of a drawn
    speaker), scores each run and averages over the runs that have the score (a run without
    low-agreement clips has no accuracy on them): the interval of the mean a study reports.

    Args:
        tables: each run's `agreement.csv` (`speaker`, `js_divergence`, `high_agreement`, `correct`).
        settings: resamples, seed and confidence level.

    Returns:
        `{score: {"mean": float or None, "interval": [low, high] or None}}` for each of
        `AGREEMENT_SCORES`; None when no run has the score, or (interval) no run has two speakers.
    """
    rng = np.random.default_rng(settings.seed)
    points, draws, speakers = [], [], []
    for table in tables:
        ids, sums = speaker_sums(table)
        points.append(scores_of_sums(sums.sum(axis=0)))
        draws.append(scores_of_sums(_draw_weights(len(ids), settings.resamples, rng) @ sums))
        speakers.append(len(ids))
    with warnings.catch_warnings():  # a score no run has is NaN, said below as None
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        point, resampled = np.nanmean(points, axis=0), np.nanmean(draws, axis=0)  # (3,), (B, 3)
    single = all(n < 2 for n in speakers)
    return {
        name: {
            "mean": None if np.isnan(point[i]) else float(point[i]),
            "interval": None if single else _interval(resampled[:, i], settings.confidence),
        }
        for i, name in enumerate(AGREEMENT_SCORES)
    }
