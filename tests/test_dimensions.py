"""Arousal, valence and dominance: the CCC, the scales, the demo targets, the heads and the batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ser_lightning.demo_corpus import DemoCorpusSpec, iter_demo_utterances
from ser_lightning.demo_corpus.dimensions import EMOTION_VALENCE, demo_dimensions, utterance_of
from ser_lightning.dimensions import (
    CORPUS_SCALES,
    DIMENSIONS,
    DimensionScale,
    TaskSettings,
    dimension_loss,
    no_dimensions_message,
    scale_for,
    task_loss,
)
from ser_lightning.metrics import ConcordanceScore, concordance_correlation, dimension_scores
from ser_lightning.models.heads import OutputHeads
from ser_lightning.reporting.dimension_report import dimension_report
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.utils.errors import InvalidSetting


def direct_ccc(x, y) -> float:
    """The formula, written out once more: 2 cov / (var_x + var_y + (mean_x - mean_y)^2), population moments."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    cov = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def test_ccc_of_a_hand_worked_example():
    # x = 1,2,3,4; y = x + 1: means 2.5 and 3.5, variances 1.25, covariance 1.25:
    # CCC = 2.5 / (1.25 + 1.25 + 1) = 5/7 (Pearson r is 1: a shift costs concordance, not correlation)
    x, y = torch.tensor([1.0, 2, 3, 4]), torch.tensor([2.0, 3, 4, 5])
    assert float(concordance_correlation(x, y)) == pytest.approx(5 / 7)
    # y = 2x: covariance 2.5, variance of y 5, means 2.5 and 5: 5 / (1.25 + 5 + 6.25) = 0.4
    assert float(concordance_correlation(x, 2 * x)) == pytest.approx(0.4)
    assert float(concordance_correlation(x, x)) == pytest.approx(1.0)
    assert float(concordance_correlation(x, -x + 5)) == pytest.approx(-1.0)  # mirrored about the same mean


def test_ccc_pearson_and_mae_match_the_direct_formulas_on_random_values():
    rng = np.random.default_rng(0)
    target = rng.normal(3, 1, (200, 3))
    predicted = 0.6 * target + rng.normal(0.5, 0.7, (200, 3))
    scores = dimension_scores(predicted, target, DIMENSIONS)
    for i, name in enumerate(DIMENSIONS):
        assert scores.loc[name, "ccc"] == pytest.approx(direct_ccc(predicted[:, i], target[:, i]), rel=1e-5)
        assert scores.loc[name, "r"] == pytest.approx(np.corrcoef(predicted[:, i], target[:, i])[0, 1])
        assert scores.loc[name, "mae"] == pytest.approx(np.abs(predicted[:, i] - target[:, i]).mean())
    # the epoch metric, fed in batches, gives the CCC of all the clips
    metric = ConcordanceScore(3)
    for start in range(0, 200, 32):
        metric.update(
            torch.from_numpy(predicted[start : start + 32]), torch.from_numpy(target[start : start + 32])
        )
    np.testing.assert_allclose(metric.compute().numpy(), scores["ccc"].to_numpy(), rtol=1e-5)


def test_ccc_loss_is_one_minus_ccc_and_mse_is_the_squared_error():
    predicted = torch.tensor([[0.1, 0.5, -0.2], [0.4, 0.1, 0.3], [-0.3, -0.2, 0.0]], requires_grad=True)
    target = torch.tensor([[0.2, 0.4, -0.1], [0.5, 0.0, 0.2], [-0.6, -0.1, 0.1]])
    expected = np.mean([1 - direct_ccc(predicted[:, i].detach(), target[:, i]) for i in range(3)])
    loss = dimension_loss(predicted, target, "ccc")
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()  # differentiable
    assert predicted.grad is not None and torch.isfinite(predicted.grad).all()
    assert float(dimension_loss(predicted, target, "mse")) == pytest.approx(
        float(((predicted - target) ** 2).mean())
    )
    multitask = TaskSettings("multitask", "mse", 0.5)
    combined = task_loss(multitask, torch.tensor(2.0), predicted, target)
    assert float(combined) == pytest.approx(2.0 + 0.5 * float(((predicted - target) ** 2).mean()))


def test_scales_normalise_to_minus_one_plus_one_and_back():
    msp, iemocap = scale_for("msp_podcast"), scale_for("iemocap")
    assert (msp.low, msp.high) == (1.0, 7.0) and (iemocap.low, iemocap.high) == (1.0, 5.0)
    assert scale_for("ravdess", demo=True) == DimensionScale(*CORPUS_SCALES["demo"])
    assert scale_for("ravdess") is None and "data.corpus=ravdess" in no_dimensions_message("ravdess")
    ratings = np.array([1.0, 4.0, 7.0, 2.5])
    np.testing.assert_allclose(msp.normalise(ratings), [-1.0, 0.0, 1.0, -0.5])
    np.testing.assert_allclose(msp.denormalise(msp.normalise(ratings)), ratings)
    assert DimensionScale.from_dict(msp.to_dict()) == msp
    with pytest.raises(InvalidSetting, match="low < high"):
        DimensionScale(5.0, 1.0)
    with pytest.raises(InvalidSetting, match="dimension_scale"):
        DimensionScale.from_dict({"low": 1.0, "high": 5.0, "extra": "code"})


def test_task_settings_refuse_mistakes():
    assert (
        TaskSettings.of(None).name == "categorical"
        and TaskSettings.of({"name": "dimensional"}).monitor == "val/ccc"
    )
    with pytest.raises(InvalidSetting, match="task.name"):
        TaskSettings.of({"name": "regression"})
    with pytest.raises(InvalidSetting, match="task.loss"):
        TaskSettings.of({"name": "dimensional", "loss": "l1"})
    with pytest.raises(InvalidSetting, match="dimension_weight"):
        TaskSettings.of({"name": "multitask", "dimension_weight": 0})


def test_heads_split_the_last_layer_into_logits_and_bounded_dimensions():
    outputs = torch.tensor([[1.0, 2.0, 3.0, 10.0, -10.0, 0.0]])
    logits, dimensions = OutputHeads(3, TaskSettings("multitask"))(outputs)
    assert logits.tolist() == [[1.0, 2.0, 3.0]]
    np.testing.assert_allclose(dimensions.numpy(), np.tanh([[10.0, -10.0, 0.0]]), rtol=1e-6)
    assert OutputHeads(3, TaskSettings("dimensional")).width == 3
    assert OutputHeads(3, TaskSettings("categorical")).width == 3
    logits, dimensions = OutputHeads(8, TaskSettings("dimensional"))(outputs[:, 3:])
    assert logits is None and dimensions.shape == (1, 3)


def test_demo_targets_follow_the_design():
    spec = DemoCorpusSpec(num_actors=4, duration=1.0)
    rows = {u: demo_dimensions(spec, u) for u in iter_demo_utterances(spec)}
    values = np.array(list(rows.values()))
    assert ((values > 1) & (values < 5)).all()  # the demo scale, 1-5
    frame = pd.DataFrame(values, columns=DIMENSIONS)
    frame["emotion"] = [u.emotion for u in rows]
    frame["strong"] = [u.intensity == "02" for u in rows]
    means = frame.groupby("emotion")[list(DIMENSIONS)].mean()
    # the acted cues: angry is louder, higher, faster and brighter than sad and calm
    assert means.loc["angry", "arousal"] > means.loc["neutral", "arousal"] > means.loc["sad", "arousal"]
    # valence follows the documented table's order
    assert means.loc["happy", "valence"] > means.loc["neutral", "valence"] > means.loc["sad", "valence"]
    assert EMOTION_VALENCE["happy"] > 0 > EMOTION_VALENCE["angry"]
    assert means.loc["angry", "dominance"] > means.loc["fearful", "dominance"]
    # strong takes lie further from the neutral 3 than normal ones, and clips of one emotion vary
    deviation = (frame[list(DIMENSIONS)] - 3).abs().mean(axis=1)
    acted = frame["emotion"] != "neutral"
    assert deviation[acted & frame["strong"]].mean() > deviation[acted & ~frame["strong"]].mean()
    assert frame.groupby("emotion")["arousal"].std().min() > 0.05
    # a pure function of (spec, file name)
    first = next(iter(rows))
    assert demo_dimensions(spec, utterance_of(f"Actor_01/{first.filename}")) == rows[first]


def test_the_report_intervals_resample_speakers():
    rng = np.random.default_rng(1)
    target = rng.uniform(1, 5, (60, 3))
    predicted = target + rng.normal(0, 0.5, (60, 3))
    speakers = [f"s{i % 6}" for i in range(60)]
    report = dimension_report(
        [f"f{i}" for i in range(60)],
        speakers,
        predicted,
        target,
        {"low": 1.0, "high": 5.0},
        BootstrapSettings(resamples=200, seed=0),
    )
    point = dimension_scores(predicted, target, DIMENSIONS)
    pd.testing.assert_series_equal(report.scores["ccc"], point["ccc"])
    for metric in ("ccc", "r", "mae"):
        assert (report.scores[f"{metric}_low"] <= report.scores[metric] + 1e-9).all()
        assert (report.scores[metric] <= report.scores[f"{metric}_high"] + 1e-9).all()
    assert report.bootstrap["speakers"] == 6
    summary = report.summary()
    assert summary["ccc"] == pytest.approx(point["ccc"].mean())
    assert summary["ccc_valence_low"] == report.scores.loc["valence", "ccc_low"]
    one = dimension_report(["a", "b"], ["s", "s"], predicted[:2], target[:2], {"low": 1.0, "high": 5.0})
    assert "ccc_low" not in one.scores and "one test speaker" in one.bootstrap["note"]


def test_a_resumed_run_keeps_its_best_validation_ccc():
    from .helpers.models import TINY_NET, module_from_config

    module = module_from_config([*TINY_NET, "task=dimensional"], duration=1.0)
    assert module.model.heads.width == 3 and module.model.task.name == "dimensional"
    module.val_ccc_best(torch.tensor(0.61))
    module.val_ccc_best(torch.tensor(0.42))
    checkpoint = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["val_ccc_best"] == pytest.approx(0.61)
    resumed = module_from_config([*TINY_NET, "task=dimensional"], duration=1.0)
    resumed.on_load_checkpoint(checkpoint)
    assert float(resumed.val_ccc_best.compute()) == pytest.approx(0.61)
