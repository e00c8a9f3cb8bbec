"""eval of a task=dimensional checkpoint: CCC, Pearson r and MAE per dimension with speaker intervals,
like the training run's test report, checked against a direct formula on eval's own predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.eval import evaluate
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides
from .helpers.models import TINY_TRAINING


def direct_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's concordance correlation, population moments: 2 cov / (var x + var y + (mean x - mean y)^2)."""
    covariance = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_eval_scores_a_dimensional_checkpoint_with_speaker_intervals(small_demo_root, tmp_path):
    cfg = compose_train(
        small_demo_overrides(small_demo_root) + TINY_TRAINING + ["task=dimensional"],
        tmp_path / "run",
        tmp_path / "cache",
    )
    _, objects = train(cfg)
    best = objects["summary"]["best_checkpoint"]
    report, summary = evaluate(
        compose_train(
            [f"ckpt_path={best}", f"+data.root={small_demo_root}", "device=cpu"],
            tmp_path / "eval",
            tmp_path / "cache",
            config_name="eval",
        )
    )
    assert report is None  # no classes: no class report
    predictions = pd.read_csv(tmp_path / "eval" / "dimension_predictions.csv")
    scores = pd.read_csv(tmp_path / "eval" / "dimensions.csv", index_col="dimension")
    assert predictions["file"].is_unique and len(predictions) > 10  # each test clip once
    for name in DIMENSIONS:
        predicted, rated = predictions[name].to_numpy(), predictions[f"{name}_true"].to_numpy()
        assert summary["dimensions"][f"ccc_{name}"] == pytest.approx(direct_ccc(predicted, rated), abs=1e-4)
        assert summary["dimensions"][f"r_{name}"] == pytest.approx(
            np.corrcoef(predicted, rated)[0, 1], abs=1e-4
        )
        assert summary["dimensions"][f"mae_{name}"] == pytest.approx(
            np.abs(predicted - rated).mean(), abs=1e-4
        )
        assert scores.loc[name, "ccc_low"] <= scores.loc[name, "ccc"] <= scores.loc[name, "ccc_high"]
        assert ((predicted >= 1.0) & (predicted <= 5.0)).all()
    assert summary["dimensions"]["ccc"] == pytest.approx(scores["ccc"].mean())
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["dimensions"] == summary["dimensions"]
    assert predictions["speaker"].nunique() >= 2
