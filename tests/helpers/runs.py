"""What every finished training run must hold, checked with real values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd


def assert_complete_test_result(run_dir: Path, metrics: dict | None = None) -> dict:
    """The run's test result is whole: UA in [0, 1] and a finite test loss, one recall per label,
    probabilities over exactly the run's labels summing to 1 per clip, and a K x K confusion
    matrix that counts every scored clip. Returns the run's summary."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    labels, scores = summary["labels"], summary["metrics"]
    if metrics is not None:
        assert metrics["test/ua"] == scores["test/ua"]
    assert 0.0 <= scores["test/ua"] <= 1.0
    assert math.isfinite(scores["test/loss"]), scores["test/loss"]
    assert sorted(k.removeprefix("test/recall_") for k in scores if k.startswith("test/recall_")) == sorted(
        labels
    )
    report = Path(run_dir) / "test_report"
    predictions = pd.read_csv(report / "predictions.csv")
    assert 0 < len(predictions) <= summary["split_sizes"]["test"]
    probabilities = predictions[[f"prob_{label}" for label in labels]].to_numpy()
    assert np.isfinite(probabilities).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert set(predictions["true"]) <= set(labels) and set(predictions["predicted"]) <= set(labels)
    confusion = pd.read_csv(report / "confusion_matrix.csv", index_col=0)
    assert confusion.shape == (len(labels), len(labels))
    assert list(confusion.columns) == labels and int(confusion.to_numpy().sum()) == len(predictions)
    return summary
