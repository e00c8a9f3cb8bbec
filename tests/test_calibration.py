"""Calibration: ECE, temperature scaling fitted on validation logits, and its place in checkpoints."""

import numpy as np
import pytest
import torch

from ser_lightning.calibration import check_calibration, fit_temperature, probabilities, temperature_of
from ser_lightning.checkpoint import CHECKPOINT_FORMAT_VERSION, RECORD_KEY, CheckpointError
from ser_lightning.metrics import calibration_bins, expected_calibration_error
from ser_lightning.model import SERModel

from .helpers.models import tiny_module

K = 8


def over_confident_logits(n: int, seed: int, sharpen: float = 4.0):
    """Logits of a model whose probabilities are calibrated at temperature `sharpen`: the true
    class is drawn from softmax(base), and the model reports softmax(base * sharpen)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 1.2, size=(n, K))
    base[np.arange(n), rng.integers(0, K, n)] += 1.5
    calibrated = np.exp(base) / np.exp(base).sum(axis=1, keepdims=True)
    y_true = np.array([rng.choice(K, p=p) for p in calibrated])
    return base * sharpen, y_true


def test_ece_of_hand_made_bins():
    # two files at confidence 0.9 (one right), two at 0.6 (both right): |0.5-0.9|/2 + |1-0.6|/2
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    bins = calibration_bins(p, y)
    assert bins["files"].sum() == 4 and len(bins) == 15


def test_temperature_scaling_lowers_ece_and_keeps_every_prediction():
    val_logits, val_true = over_confident_logits(2000, seed=0)
    test_logits, test_true = over_confident_logits(2000, seed=1)
    record = fit_temperature(val_logits, val_true)
    assert record["temperature"] == pytest.approx(4.0, rel=0.15)
    assert record["nll_after"] < record["nll_before"]
    before = probabilities(torch.from_numpy(test_logits)).numpy()
    after = probabilities(torch.from_numpy(test_logits), record["temperature"]).numpy()
    assert expected_calibration_error(after, test_true) < expected_calibration_error(before, test_true) / 3
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))
    np.testing.assert_allclose(after.sum(axis=1), 1.0, atol=1e-5)


def test_calibration_records_are_vetted():
    check_calibration(None)
    check_calibration({"method": "temperature", "temperature": 1.7, "files": 240, "fitted_on": "val"})
    assert (
        temperature_of(None) == 1.0 and temperature_of({"method": "temperature", "temperature": 2.0}) == 2.0
    )
    for bad in (
        {"method": "temperature", "temperature": -1.0},
        {"method": "temperature", "temperature": "2"},
        {"method": "isotonic"},
        {"method": "temperature", "temperature": float("nan")},
        "temperature",
        {"method": "temperature", "temperature": 1.0, "extra": [1, 2]},
    ):
        with pytest.raises(ValueError):
            check_calibration(bad)


def save(module, path, calibration):
    hparams = dict(module.hparams)
    hparams["calibration"] = calibration
    if calibration == "left out":
        del hparams["calibration"]
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": hparams,
            RECORD_KEY: {"format_version": CHECKPOINT_FORMAT_VERSION, "data": None, "split": None},
        },
        path,
    )
    return path


def test_the_checkpoints_temperature_is_applied_and_a_bad_one_refused(tmp_path):
    torch.manual_seed(0)
    module = tiny_module()
    loaded = SERModel.load_from_checkpoint(
        save(module, tmp_path / "t.ckpt", {"method": "temperature", "temperature": 2.5})
    )
    assert loaded.temperature == 2.5
    waves = torch.randn(2, loaded.audio.num_samples)
    with torch.inference_mode():
        logits = loaded(loaded.inputs({"waveform": waves}))
        torch.testing.assert_close(
            loaded.probabilities({"waveform": waves}), torch.softmax(logits / 2.5, dim=-1)
        )
        torch.testing.assert_close(
            loaded.probabilities({"waveform": waves}, calibrated=False), torch.softmax(logits, dim=-1)
        )
    # hyper-parameters without the key (a run that never calibrated): temperature 1
    assert SERModel.load_from_checkpoint(save(module, tmp_path / "none.ckpt", "left out")).temperature == 1.0
    with pytest.raises(CheckpointError, match="calibration.temperature"):
        SERModel.load_from_checkpoint(
            save(module, tmp_path / "bad.ckpt", {"method": "temperature", "temperature": 0})
        )


def test_predict_answers_uncertain_below_min_confidence(tmp_path):
    import io
    import json

    from ser_lightning.inference.output import PredictionPrinter, json_record
    from ser_lightning.inference.predictor import Predictor
    from ser_lightning.inference.results import FilePrediction

    labels = ["neutral", "happy", "sad"]
    probabilities = np.array([0.5, 0.3, 0.2])
    sure = FilePrediction(
        "a.wav", labels, probabilities, probabilities[None], [(0.0, 1.0)], 1.0, min_confidence=0.4
    )
    unsure = FilePrediction(
        "b.wav", labels, probabilities, probabilities[None], [(0.0, 1.0)], 1.0, min_confidence=0.6
    )
    assert (sure.predicted, unsure.predicted, unsure.best) == ("neutral", "uncertain", "neutral")
    assert json_record(unsure)["predicted"] == "uncertain" and json_record(unsure)["best_guess"] == "neutral"
    stream = io.StringIO()
    PredictionPrinter(stream, "csv", labels).write(unsure)
    assert stream.getvalue().splitlines()[1].split(",")[4] == "uncertain"
    stream = io.StringIO()
    PredictionPrinter(stream, "human", labels).write(unsure)
    assert "Predicted emotion: uncertain (50.0%), best guess neutral, below 60.0%" in stream.getvalue()
    with pytest.raises(ValueError, match="min_confidence=1.5"):
        Predictor(tiny_module().model, device="cpu", min_confidence=1.5)
    assert json.dumps(json_record(sure))  # plain JSON


def test_the_predictor_applies_the_checkpoints_temperature_unless_told_not_to():
    torch.manual_seed(0)
    model = tiny_module().model
    model.calibration = {"method": "temperature", "temperature": 3.0}
    waves = np.random.default_rng(0).standard_normal((2, model.audio.num_samples)).astype(np.float32)
    calibrated = predictor_probabilities(model, waves, calibrated=True)
    plain = predictor_probabilities(model, waves, calibrated=False)
    with torch.inference_mode():
        logits = model(model.inputs({"waveform": torch.from_numpy(waves)}))
    np.testing.assert_allclose(calibrated, torch.softmax(logits / 3.0, -1).numpy(), atol=1e-6)
    np.testing.assert_allclose(plain, torch.softmax(logits, -1).numpy(), atol=1e-6)


def predictor_probabilities(model, waves, calibrated):
    from ser_lightning.inference.predictor import Predictor

    return Predictor(model, device="cpu", calibrated=calibrated).waveform_probabilities(waves)
