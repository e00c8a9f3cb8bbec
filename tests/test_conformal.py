"""Conformal prediction sets: the coverage guarantee on synthetic scores, set sizes, the stored record,
the coverage report, and the sets predict gives from a checkpoint."""

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from ser_lightning.calibration import check_calibration
from ser_lightning.checkpoint import CheckpointError
from ser_lightning.checkpoint_calibration import calibration_settings
from ser_lightning.conformal import (
    check_conformal,
    conformal_threshold,
    fit_conformal,
    minimum_clips,
    prediction_sets,
    quantile_rank,
    set_labels,
    true_class_scores,
)
from ser_lightning.model import SERModel
from ser_lightning.reporting.conformal import clopper_pearson, conformal_summary, coverage_table
from ser_lightning.utils.errors import InvalidSetting

from .helpers.models import tiny_module
from .test_calibration import save

K = 6


def calibrated_draws(rng, draws: int, n: int, k: int = K):
    """`draws` independent sets of `n` clips each: probabilities from random logits, and true
    classes drawn from those probabilities (so every clip is exchangeable with every other)."""
    logits = rng.normal(0.0, 1.5, size=(draws, n, k))
    p = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    u = rng.random((draws, n, 1))
    y = (p.cumsum(axis=-1) < u).sum(axis=-1).clip(max=k - 1)
    return p, y


@pytest.mark.parametrize(("n", "coverage"), [(50, 0.9), (19, 0.8), (200, 0.95)])
def test_split_conformal_coverage_averages_between_the_target_and_its_finite_sample_bound(n, coverage):
    # Many random calibration/test draws: the achieved coverage of the bare LAC sets averages to
    # rank/(n+1) (exact for untied scores), which lies in [1-alpha, 1-alpha + 1/(n+1)).
    rng = np.random.default_rng(0)
    draws, n_test = 4000, 40
    p_cal, y_cal = calibrated_draws(rng, draws, n)
    p_test, y_test = calibrated_draws(rng, draws, n_test)
    scores = 1.0 - np.take_along_axis(p_cal, y_cal[..., None], axis=-1)[..., 0]
    covered = []
    for d in range(draws):
        threshold = conformal_threshold(scores[d], coverage)
        members = prediction_sets(p_test[d], threshold, include_top=False)
        covered.append(members[np.arange(n_test), y_test[d]].mean())
    covered = np.array(covered)
    mean, standard_error = covered.mean(), covered.std(ddof=1) / np.sqrt(draws)
    exact = quantile_rank(n, coverage) / (n + 1)
    assert coverage <= exact < coverage + 1 / (n + 1)
    assert abs(mean - exact) < 4 * standard_error
    assert coverage - 3 * standard_error <= mean <= coverage + 1 / (n + 1)


def test_the_shipped_sets_hold_the_top_emotion_and_only_add_coverage():
    rng = np.random.default_rng(1)
    p, y = calibrated_draws(rng, 1, 500)
    threshold = conformal_threshold(true_class_scores(p[0, :250], y[0, :250]), 0.5)
    bare = prediction_sets(p[0, 250:], threshold, include_top=False)
    shipped = prediction_sets(p[0, 250:], threshold)
    assert (shipped.sum(axis=1) >= 1).all() and (bare.sum(axis=1) == 0).any()  # some bare sets are empty
    assert shipped[np.arange(250), p[0, 250:].argmax(axis=1)].all()
    assert (shipped | bare == shipped).all()  # a superset, so coverage can only rise


def test_set_sizes_follow_the_threshold():
    p = np.array([[0.70, 0.20, 0.10], [0.40, 0.35, 0.25], [0.05, 0.15, 0.80]])
    # threshold 0.75: emotions with p >= 0.25
    members = prediction_sets(p, 0.75)
    expected = p >= 0.25
    np.testing.assert_array_equal(members, expected)
    assert members.sum(axis=1).tolist() == [1, 3, 1]
    assert set_labels(members[1], ["a", "b", "c"], p[1]) == ["a", "b", "c"]
    assert set_labels(members[2], ["a", "b", "c"], p[2]) == ["c"]
    # a higher coverage never gives a smaller set
    scores = np.random.default_rng(2).random(100)
    sizes = [prediction_sets(p, conformal_threshold(scores, c)).sum() for c in (0.5, 0.7, 0.9, 0.99)]
    assert sizes == sorted(sizes)


def test_the_quantile_is_the_finite_sample_rank():
    scores = np.arange(1, 11) / 10.0  # 0.1 ... 1.0, n = 10
    assert quantile_rank(10, 0.9) == 10  # ceil(11 * 0.9) = ceil(9.9)
    assert conformal_threshold(scores, 0.9) == pytest.approx(1.0)
    assert quantile_rank(99, 0.9) == 90  # (99 + 1) * 0.9 is 90 exactly, not 91
    assert conformal_threshold(scores, 0.5) == pytest.approx(0.6)  # ceil(5.5) = 6th smallest
    assert conformal_threshold(scores[:3], 0.9) == 1.0  # too few scores: every emotion
    for coverage in (0.5, 0.8, 0.9, 0.95, 0.99):  # the fewest clips whose threshold is a score
        fewest = next(n for n in range(1, 1000) if quantile_rank(n, coverage) <= n)
        assert minimum_clips(coverage) == fewest
    with pytest.raises(InvalidSetting, match="calibration.coverage=1.2"):
        conformal_threshold(scores, 1.2)


def test_the_record_counts_speakers_and_is_vetted():
    p = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    record = fit_conformal(p, [0, 1, 1, 1], 0.5, speakers=["a", "a", "b", "c"], split="actor")
    assert record["threshold"] == pytest.approx(np.sort([0.2, 0.3, 0.6, 0.1])[quantile_rank(4, 0.5) - 1])
    assert (record["speakers"], record["files"], record["split"]) == (3, 4, "actor")
    assert record["coverage_upper_bound"] == pytest.approx(0.5 + 1 / 5)
    check_conformal(record)
    check_calibration({"method": "temperature", "temperature": 1.3, "conformal": record})
    for bad in (
        {**record, "threshold": 1.5},
        {**record, "coverage": 1.0},
        {**record, "score": "aps"},
        {**record, "threshold": "0.5"},
        {**record, "extra": 1},
        {**record, "files": [1]},
        "lac",
    ):
        with pytest.raises(InvalidSetting):
            check_conformal(bad)
    with pytest.raises(InvalidSetting, match="conformal"):
        check_calibration({"method": "temperature", "temperature": 1.3, "conformal": {"score": "lac"}})


def test_train_calibration_settings():
    assert calibration_settings({"method": "conformal", "coverage": 0.8}) == ("conformal", 0.8)
    assert calibration_settings("temperature") == ("temperature", 0.9)
    assert calibration_settings(None)[0] == "none"
    with pytest.raises(InvalidSetting, match="calibration='isotonic'"):
        calibration_settings({"method": "isotonic"})
    with pytest.raises(InvalidSetting, match="calibration.coverage=0"):
        calibration_settings({"method": "conformal", "coverage": 0})


def test_coverage_table_per_group_and_clopper_pearson():
    from scipy.stats import binomtest

    members = np.array([[1, 0], [1, 1], [0, 1], [1, 0], [0, 1], [1, 0]], dtype=bool)
    y = np.array([0, 1, 0, 1, 1, 0])  # covered: T T F F T T
    clips = pd.DataFrame(
        {"speaker": ["s1", "s1", "s2", "s2", "s3", "s3"], "gender": ["f", "f", "m", "m", "f", "f"]}
    )
    table = coverage_table(members, y, 0.9, clips, ["a", "b"])
    by = {(r.by, r.group): r for r in table.itertuples()}
    assert by[("overall", "all")].coverage == pytest.approx(4 / 6)
    assert by[("overall", "all")].mean_set_size == pytest.approx(7 / 6)
    assert by[("speaker", "s2")].coverage == 0.0 and by[("speaker", "s2")].files == 2
    assert by[("gender", "f")].coverage == 1.0
    assert by[("emotion", "b")].coverage == pytest.approx(2 / 3)
    low, high = clopper_pearson(4, 6)
    interval = binomtest(4, 6).proportion_ci(0.95, method="exact")
    assert (low, high) == pytest.approx((interval.low, interval.high))
    # holds: the interval's upper end reaches the target
    assert by[("overall", "all")].holds == (high >= 0.9)
    assert not by[("speaker", "s2")].holds and by[("speaker", "s1")].holds


def test_the_summary_scores_the_stored_threshold():
    rng = np.random.default_rng(3)
    p, y = calibrated_draws(rng, 2, 400)
    record = fit_conformal(p[0], y[0], 0.9)
    clips = pd.DataFrame({"speaker": np.repeat(["a", "b", "c", "d"], 100)})
    summary, table, members = conformal_summary(p[1], y[1], record, clips, [f"e{k}" for k in range(K)])
    covered = (1.0 - p[1][np.arange(400), y[1]] <= record["threshold"]) | (p[1].argmax(axis=1) == y[1])
    assert summary["coverage"] == pytest.approx(covered.mean())
    assert summary["speakers_holding"].endswith("of 4") and len(table) == 1 + 4 + K
    assert sum(summary["set_sizes"].values()) == 400
    assert summary["mean_set_size"] == pytest.approx(members.sum() / 400)
    assert 0.85 < summary["coverage"] < 0.96


def one_window(model):
    from ser_lightning.inference.windows import ClipWindows

    samples = model.audio.num_samples
    return ClipWindows(np.zeros(samples, np.float32), np.array([0]), samples, 0, model.audio.sample_rate, 1.0)


def test_a_checkpoints_conformal_record_round_trips_and_predict_gives_sets(tmp_path):
    from ser_lightning.inference.output import PredictionPrinter, json_record
    from ser_lightning.inference.predictor import Predictor

    torch.manual_seed(0)
    module = tiny_module()
    record = {"method": "temperature", "temperature": 1.5}
    record["conformal"] = fit_conformal(np.array([[0.6, 0.4], [0.3, 0.7], [0.5, 0.5]]), [0, 1, 1], 0.5)
    loaded = SERModel.load_from_checkpoint(save(module, tmp_path / "c.ckpt", record))
    assert loaded.calibration["conformal"] == record["conformal"]
    bad = {**record, "conformal": {**record["conformal"], "threshold": -0.1}}
    with pytest.raises(CheckpointError, match="conformal.threshold"):
        SERModel.load_from_checkpoint(save(module, tmp_path / "bad.ckpt", bad))

    waves = np.random.default_rng(0).standard_normal((3, loaded.audio.num_samples)).astype(np.float32)
    predictor = Predictor(loaded, device="cpu")
    scores = predictor.waveform_scores(waves)
    item = predictor.prediction("x.wav", one_window(loaded), scores[:1])
    expected = set_labels(
        prediction_sets(item.probabilities, record["conformal"]["threshold"]),
        loaded.labels,
        item.probabilities,
    )
    assert item.prediction_set == expected and item.prediction_set[0] == item.best
    assert item.set_coverage == 0.5
    record_json = json_record(item)
    assert record_json["emotion_set"] == expected and record_json["set_coverage"] == 0.5
    stream = io.StringIO()
    PredictionPrinter(stream, "human", loaded.labels).write(item)
    assert "Set (50% coverage): " + ", ".join(expected) in stream.getvalue()
    stream = io.StringIO()
    PredictionPrinter(stream, "csv", loaded.labels).write(item)
    assert stream.getvalue().splitlines()[1].split(",")[-2] == "|".join(expected)
    assert json.dumps(record_json)
    # calibration=none: plain softmax, so no sets
    plain = Predictor(loaded, device="cpu", calibrated=False).prediction(
        "x.wav", one_window(loaded), scores[:1]
    )
    assert plain.prediction_set is None and "emotion_set" not in json_record(plain)
