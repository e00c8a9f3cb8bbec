"""One definition per SER metric: what the module logs (and ranks checkpoints on) equals the report."""

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_recall_fscore_support,
)

from ser_lightning.labels import EMOTIONS
from ser_lightning.reporting.evaluation import evaluation_report

from .helpers.models import tiny_module

# Labels hold emotions 0 and 1 only; emotion 2 is predicted once although no file has it.
# Recalls: 0 → 1/2, 1 → 2/2, so UA = 0.75. Counting emotion 2 with recall 0 would give 0.50.
CASE_TRUE = [0, 0, 1, 1]
CASE_PRED = [0, 2, 1, 1]


@pytest.fixture(scope="module")
def module():
    return tiny_module()


def logits_predicting(predicted, num_classes: int = len(EMOTIONS)) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(predicted), num_classes).float() * 5.0


def epoch_of(metrics, predicted, target, batch_size: int = 2) -> dict[str, float]:
    """Feed an epoch in batches the way the module's steps do, then compute what it logs."""
    metrics.reset()
    logits, target = logits_predicting(predicted), torch.as_tensor(target)
    for start in range(0, len(target), batch_size):
        metrics.update(logits[start : start + batch_size], target[start : start + batch_size])
    return {name: float(value) for name, value in metrics.compute().items()}


def test_ua_leaves_out_a_class_the_labels_lack_even_when_it_is_predicted(module):
    logits = logits_predicting(CASE_PRED)
    report = evaluation_report(
        [f"{i}.wav" for i in range(4)], CASE_TRUE, torch.softmax(logits, -1).numpy(), EMOTIONS
    )
    val = epoch_of(module.val_metrics, CASE_PRED, CASE_TRUE)

    assert val["val/ua"] == report.metrics["ua"] == pytest.approx(0.75)
    assert val["val/acc"] == report.metrics["accuracy"] == pytest.approx(0.75)
    # F1: emotion 0 → 2/3, emotion 1 → 1, emotion 2 (predicted, absent) → 0; the other five do not count
    assert val["val/f1"] == pytest.approx(report.metrics["macro_f1"]) == pytest.approx(5 / 9)
    assert report.per_class["recall"].tolist()[:3] == [0.5, 1.0, 0.0]
    assert report.confusion.tolist()[0][:3] == [1, 0, 1]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_module_metrics_and_the_report_are_scikit_learns_definitions(module, seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 6, size=90)  # two emotions absent from the labels, as on a foreign corpus
    y_pred = np.where(rng.uniform(size=90) < 0.5, y_true, rng.integers(0, 8, size=90))
    logged = epoch_of(module.val_metrics, y_pred, y_true, batch_size=16)
    assert logged["val/acc"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert logged["val/ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert logged["val/f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))

    probabilities = torch.softmax(logits_predicting(y_pred), -1).numpy()
    report = evaluation_report([f"{i}.wav" for i in range(90)], y_true, probabilities, EMOTIONS)
    assert report.metrics["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=range(8), zero_division=0
    )
    np.testing.assert_allclose(report.per_class["recall"], recall)
    np.testing.assert_allclose(report.per_class["precision"], precision)
    np.testing.assert_allclose(report.per_class["f1"], f1)
    np.testing.assert_array_equal(report.per_class["support"], support)
