"""The evaluation report: metric definitions, agreement with scikit-learn, and the files it writes."""

import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from ser_lightning.labels import EMOTIONS
from ser_lightning.reporting.evaluation import evaluation_report
from ser_lightning.reporting.evaluation_files import write_report


def one_hot_probabilities(predicted, num_classes, seed=0):
    """Probabilities whose argmax is `predicted` (the rest spread randomly)."""
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.0, 0.5, size=(len(predicted), num_classes))
    probs[np.arange(len(predicted)), predicted] = 1.0
    return probs / probs.sum(axis=1, keepdims=True)


def test_metrics_match_a_hand_computed_example():
    labels = ["a", "b", "c", "d"]  # "d" never occurs: it has support 0 and no predictions
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 1, 1, 2, 2, 2]
    report = evaluation_report(
        [f"f{i}.wav" for i in range(8)], y_true, one_hot_probabilities(y_pred, 4), labels
    )
    # 6 of 8 right; recalls a 3/4, b 1/2, c 2/2; precisions a 3/3, b 1/2, c 2/3
    f1 = {"a": 2 * 1.0 * 0.75 / 1.75, "b": 0.5, "c": 2 * (2 / 3) * 1.0 / (5 / 3)}
    assert report.metrics["accuracy"] == pytest.approx(6 / 8)
    assert report.metrics["ua"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    assert report.metrics["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    assert report.metrics["weighted_f1"] == pytest.approx((4 * f1["a"] + 2 * f1["b"] + 2 * f1["c"]) / 8)
    table = report.per_class
    assert table.loc["a", "precision"] == 1.0 and table.loc["b", "recall"] == 0.5
    assert table.loc["c", "precision"] == pytest.approx(2 / 3) and table.loc["c", "f1"] == pytest.approx(
        f1["c"]
    )
    assert table["support"].tolist() == [4, 2, 2, 0]
    assert report.confusion.tolist() == [[3, 1, 0, 0], [0, 1, 1, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    assert report.confusion_normalized[0].tolist() == [0.75, 0.25, 0.0, 0.0]
    assert report.confusion_normalized[3].tolist() == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_sklearn_on_the_same_predictions(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 7, size=200)  # "surprised" absent from the truth, as in a foreign corpus
    y_pred = np.where(rng.uniform(size=200) < 0.6, y_true, rng.integers(0, 8, size=200))
    report = evaluation_report(
        [f"{i}.wav" for i in range(200)], y_true, one_hot_probabilities(y_pred, 8, seed), EMOTIONS
    )
    np.testing.assert_array_equal(report.y_pred, y_pred)
    assert report.metrics["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert report.metrics["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert report.metrics["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert report.metrics["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=range(8), zero_division=0
    )
    np.testing.assert_allclose(
        report.per_class[["precision", "recall", "f1"]].to_numpy(), np.c_[precision, recall, f1]
    )
    np.testing.assert_array_equal(report.per_class["support"], support)
    np.testing.assert_array_equal(report.confusion, confusion_matrix(y_true, y_pred, labels=range(8)))


def test_the_report_files_hold_the_report(tmp_path):
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 8, size=60)
    probs = rng.dirichlet(np.ones(8), size=60)
    files = [f"Actor_01/{i:02d}.wav" for i in range(60)]
    report = evaluation_report(files, y_true, probs, EMOTIONS)
    paths = write_report(report, tmp_path / "report", title="unit test")

    assert json.loads(paths["metrics"].read_text())["ua"] == pytest.approx(report.metrics["ua"])
    predictions = pd.read_csv(paths["predictions"])
    assert list(predictions.columns) == ["file", "true", "predicted"] + [f"prob_{e}" for e in EMOTIONS]
    assert predictions["file"].tolist() == files
    assert predictions["true"].tolist() == [EMOTIONS[i] for i in y_true]
    np.testing.assert_allclose(predictions.filter(like="prob_").to_numpy(), probs, atol=1e-6)
    counts = pd.read_csv(paths["confusion_counts"], index_col=0)
    assert list(counts.columns) == list(EMOTIONS) and list(counts.index) == list(EMOTIONS)
    np.testing.assert_array_equal(counts.to_numpy(), report.confusion)
    normalized = pd.read_csv(paths["confusion_normalized"], index_col=0).to_numpy()
    support = report.confusion.sum(axis=1)
    np.testing.assert_allclose(normalized.sum(axis=1)[support > 0], 1.0, atol=1e-3)
    per_class = pd.read_csv(paths["per_class"], index_col=0)
    assert per_class["support"].sum() == 60
    image = matplotlib.image.imread(paths["confusion_png"])
    assert image.ndim == 3 and image.shape[1] > image.shape[0] > 300  # two panels side by side


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="one file, label and row of 8 probabilities"):
        evaluation_report(["a.wav"], [0, 1], np.full((2, 8), 1 / 8), EMOTIONS)
