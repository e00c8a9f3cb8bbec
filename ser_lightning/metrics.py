"""The SER metrics, each defined once, as a function of a confusion matrix.

Every score ser_lightning reports comes from the functions below applied to a confusion matrix
`C` (rows = true class, columns = predicted class, over the model's whole label order): the
module's `train/` and `val/` metrics and `val/ua_best` (what checkpoints, early stopping and
sweeps rank on), and the evaluation report of a test stage, which the `test/` metrics, the report
files of `train` and `eval` and the W&B per-class table all read. So they cannot disagree. The definitions are scikit-learn's, so any score can be
checked against it:

- WA (`acc`, `accuracy`): trace(C) / sum(C), the share of files classified correctly.
- UA (`ua`): the mean recall over the classes present in the true labels (support > 0), as
  `sklearn.metrics.balanced_accuracy_score`. A class no file has is left out even when it is
  predicted: it has no recall, and its wrong predictions already lower the recall of the classes
  they were taken from. (torchmetrics' macro accuracy would count it with recall 0.)
- per-class recall: C[k, k] / support_k; 0 for a class without support (listed with support 0).
- per-class precision: C[k, k] / predictions_k; 0 for a class never predicted.
- per-class F1: 2 C[k, k] / (support_k + predictions_k), i.e. 2PR / (P + R); 0 for a class that
  is neither in the labels nor predicted.
- macro-F1 (`f1`, `macro_f1`): the mean F1 over the classes present in the true or the predicted
  labels, as `sklearn.metrics.f1_score(average="macro")`: a class predicted but absent from the
  labels counts (with F1 0, its predictions are all wrong); one neither present nor predicted does not.
- weighted F1: per-class F1 weighted by support.

A metric of no files at all (an empty matrix) is 0.

Calibration scores need the probabilities too: ECE (`expected_calibration_error`, 15
equal-width confidence bins), the reliability table (`calibration_bins`) and the negative
log-likelihood.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike
from sklearn.metrics import confusion_matrix
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from ser_lightning.utils.errors import InvalidSetting

# The definitions above in one line each, as every protocol card records them
# (ser_lightning/data/protocol_card.py): results scored otherwise do not stand side by side.
METRIC_DEFINITIONS: dict[str, str] = {
    "ua": "unweighted accuracy: mean recall over the classes present in the true labels (balanced accuracy)",
    "acc": "weighted accuracy: share of files classified correctly",
    "f1": "macro F1 over the classes present in the true or the predicted labels",
}


# ------------------------------------------------------------------ definitions (pure functions)
def confusion_counts(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Count the confusion matrix of true and predicted class indices.

    Args:
        y_true: The true class index of every file.
        y_pred: The predicted class index of every file.
        num_classes: The number of classes K; every index must lie in [0, K).

    Returns:
        C `(K, K)`, C[i, j] = number of files of true class i predicted as class j.

    Raises:
        InvalidSetting: If a true or predicted index lies outside [0, num_classes).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    for name, values in (("true", y_true), ("predicted", y_pred)):
        # scikit-learn would silently leave out a file whose class is not in `labels`
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise InvalidSetting(
                f"{name} class indices must lie in [0, {num_classes}); got {sorted(set(values.tolist()))}"
            )
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Return numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _counts(confusion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (correct, support, predictions) per class: the diagonal, row sums and column sums."""
    confusion = np.asarray(confusion, dtype=np.int64)
    return np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)


def support(confusion) -> np.ndarray:
    """Return the number of files of each true class (the row sums of the confusion matrix)."""
    return _counts(confusion)[1]


def per_class_recall(confusion) -> np.ndarray:
    """Return each class's recall, C[k, k] / support_k (0 for a class without support)."""
    correct, support, _ = _counts(confusion)
    return _ratio(correct, support)


def per_class_precision(confusion) -> np.ndarray:
    """Return each class's precision, C[k, k] / predictions_k (0 for a class never predicted)."""
    correct, _, predictions = _counts(confusion)
    return _ratio(correct, predictions)


def per_class_f1(confusion) -> np.ndarray:
    """Return each class's F1, 2 C[k, k] / (support_k + predictions_k) (0 when both are 0)."""
    correct, support, predictions = _counts(confusion)
    return _ratio(2 * correct, support + predictions)


def weighted_accuracy(confusion) -> float:
    """Return WA: trace(C) / sum(C), the share of files classified correctly (0 for no files)."""
    correct, support, _ = _counts(confusion)
    return float(_ratio(correct.sum(), support.sum()))


def unweighted_accuracy(confusion) -> float:
    """Return UA: the mean recall over the classes with support > 0 (0 for no files)."""
    present = support(confusion) > 0
    return float(per_class_recall(confusion)[present].mean()) if present.any() else 0.0


def macro_f1(confusion) -> float:
    """Return macro-F1: the mean F1 over the classes present in the true or predicted labels."""
    _, support, predictions = _counts(confusion)
    seen = (support + predictions) > 0
    return float(per_class_f1(confusion)[seen].mean()) if seen.any() else 0.0


def weighted_f1(confusion) -> float:
    """Return the per-class F1 weighted by support (0 for no files)."""
    class_support = support(confusion)
    return float(_ratio((per_class_f1(confusion) * class_support).sum(), class_support.sum()))


def per_class_table(confusion, labels) -> pd.DataFrame:
    """Tabulate precision, recall, F1 and support of every class of `labels`, in that order.

    Returns:
        One row per label (index named "emotion"), columns precision, recall, f1 and support.
    """
    return pd.DataFrame(
        {
            "precision": per_class_precision(confusion),
            "recall": per_class_recall(confusion),
            "f1": per_class_f1(confusion),
            "support": support(confusion).astype(int),
        },
        index=pd.Index(list(labels), name="emotion"),
    )


# ------------------------------------------------------------------ the module's torchmetrics
class ConfusionScore(MulticlassConfusionMatrix):
    """One of the scores above, accumulated over an epoch as torchmetrics' confusion matrix.

    The matrix is the metric state (summed across processes under DDP); `compute` applies `score`
    to it. The scores of one stage share that state: a MetricCollection updates it once per batch.
    """

    def __init__(self, num_classes: int, score: Callable[[np.ndarray], float], **kwargs):
        super().__init__(num_classes, **kwargs)
        self.score = score

    def compute(self) -> torch.Tensor:
        """Return `score` of the accumulated confusion matrix, a float32 scalar on its device."""
        value = self.score(self.confmat.detach().cpu().numpy())
        return torch.tensor(value, dtype=torch.float32, device=self.confmat.device)


# The scores every stage logs as `<stage>/<name>`: `train/` and `val/` through ser_metrics, `test/`
# from the evaluation report of the test stage (ser_lightning.reporting.collector).
STAGE_SCORES: dict[str, Callable[[np.ndarray], float]] = {
    "acc": weighted_accuracy,
    "ua": unweighted_accuracy,
    "f1": macro_f1,
}


def ser_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """WA (`acc`), UA (`ua`) and macro-F1 (`f1`) of one stage, as defined above.

    Args:
        num_classes: The number of classes.
        prefix: Prepended to each name, e.g. "val/".

    Returns:
        A MetricCollection of one ConfusionScore per STAGE_SCORES entry (sharing their state).
    """
    return MetricCollection(
        {name: ConfusionScore(num_classes, score) for name, score in STAGE_SCORES.items()}, prefix=prefix
    )


# ------------------------------------------------------------------ calibration (of probabilities)
# Calibration scores read the predicted probabilities, not only the confusion matrix: a model is
# calibrated when, of the files it gives confidence p, a share p is classified correctly.
CALIBRATION_BINS = 15


def calibration_bins(
    probabilities: ArrayLike, y_true: ArrayLike, bins: int = CALIBRATION_BINS
) -> pd.DataFrame:
    """Group files by top-label confidence into `bins` equal-width bins of (0, 1] (a reliability table).

    Args:
        probabilities: The predicted probabilities, `(N, K)`.
        y_true: The true class indices, `(N,)`.
        bins: The number of bins.

    Returns:
        One row per bin: its range (`lower`, `upper`), file count (`files`), mean
        `confidence` and `accuracy` (NaN for empty bins).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true)
    confidence = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    correct = (probabilities.argmax(axis=1) == y_true) if len(probabilities) else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds confidences in (edges[b], edges[b + 1]]; a confidence of 0 goes into the first
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    sums = lambda values: np.bincount(index, weights=values, minlength=bins)  # noqa: E731
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(count > 0, sums(confidence) / count, np.nan)
        accuracy = np.where(count > 0, sums(correct.astype(np.float64)) / count, np.nan)
    return pd.DataFrame(
        {
            "lower": edges[:-1],
            "upper": edges[1:],
            "files": count,
            "confidence": mean_confidence,
            "accuracy": accuracy,
        }
    )


def expected_calibration_error(probabilities, y_true, bins: int = CALIBRATION_BINS) -> float:
    """Expected calibration error (Guo et al. 2017) over equal-width bins of top-label confidence.

    Returns:
        ECE: the sum over confidence bins of (files in bin / files) x |accuracy - mean
        confidence|; 0 for no files.
    """
    table = calibration_bins(probabilities, y_true, bins)
    total = table["files"].sum()
    if total == 0:
        return 0.0
    filled = table[table["files"] > 0]
    return float((filled["files"] / total * (filled["accuracy"] - filled["confidence"]).abs()).sum())


def negative_log_likelihood(probabilities, y_true) -> float:
    """Return the mean -log p(true class) (the test cross-entropy), probabilities clipped at 1e-12."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(probabilities) == 0:
        return 0.0
    picked = probabilities[np.arange(len(probabilities)), np.asarray(y_true)]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def jensen_shannon_divergence(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Return each row's Jensen-Shannon divergence between distributions `p` and `q`, in bits.

    JS(p, q) = (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2 and 0 log 0 = 0: symmetric,
    0 for equal distributions, 1 at most (disjoint supports). It equals
    `scipy.spatial.distance.jensenshannon(p, q, base=2) ** 2`. Used for predicted against
    annotator distributions (data.targets=soft, docs/soft_targets.md).

    Args:
        p: `(rows, classes)` distributions (rows sum to 1).
        q: `(rows, classes)` distributions of the same shape.

    Returns:
        `(rows,)` divergences in [0, 1].
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log2(a / m), 0.0)
        return terms.sum(axis=-1)

    return np.clip((kl(p) + kl(q)) / 2.0, 0.0, 1.0)


# ------------------------------------------------------------------ dimensions (arousal, valence, dominance)
# Their definitions, recorded as METRIC_DEFINITIONS records the class scores'.
DIMENSION_METRIC_DEFINITIONS: dict[str, str] = {
    "ccc": "concordance correlation 2 cov / (var_x + var_y + (mean_x - mean_y)^2), population moments",
    "r": "Pearson correlation, population moments",
    "mae": "mean absolute error on the corpus's rating scale",
}


def concordance_correlation(
    predicted: torch.Tensor | ArrayLike, target: torch.Tensor | ArrayLike
) -> torch.Tensor:
    """Lin's concordance correlation of each column: 2 cov / (var_x + var_y + (mean_x - mean_y)^2).

    Moments are population ones (divided by n), as the MSP-Podcast challenge computes them. A
    column whose denominator is 0 (both constant and equal) scores 0.

    Args:
        predicted: `(n,)` or `(n, d)` values (tensor or array).
        target: the same shape.

    Returns:
        The CCC of each column, `(d,)` (a 0-d tensor for 1-D input), differentiable in `predicted`.
    """
    x, y = torch.as_tensor(predicted), torch.as_tensor(target)
    x, y = (
        x.to(torch.promote_types(x.dtype, torch.float32)),
        y.to(torch.promote_types(y.dtype, torch.float32)),
    )
    mean_x, mean_y = x.mean(dim=0), y.mean(dim=0)
    cov = ((x - mean_x) * (y - mean_y)).mean(dim=0)
    denominator = x.var(dim=0, unbiased=False) + y.var(dim=0, unbiased=False) + (mean_x - mean_y) ** 2
    return torch.where(denominator > 0, 2.0 * cov / denominator.clamp_min(1e-12), torch.zeros_like(cov))


def pearson_correlation(predicted: ArrayLike, target: ArrayLike) -> np.ndarray:
    """Pearson's r of each column (population moments; 0 where a column is constant).

    Args:
        predicted: `(n, d)` values.
        target: the same shape.

    Returns:
        `(d,)` correlations.
    """
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    cov = ((x - x.mean(axis=0)) * (y - y.mean(axis=0))).mean(axis=0)
    scale = x.std(axis=0) * y.std(axis=0)
    return np.where(scale > 0, cov / np.where(scale > 0, scale, 1.0), 0.0)


def dimension_scores(predicted: ArrayLike, target: ArrayLike, names: Sequence[str]) -> pd.DataFrame:
    """CCC, Pearson r and MAE of each dimension (DIMENSION_METRIC_DEFINITIONS).

    Args:
        predicted: `(n, d)` predictions on the corpus's rating scale.
        target: `(n, d)` ratings on the same scale.
        names: the d dimension names.

    Returns:
        One row per dimension (index: its name), columns ccc, r, mae.
    """
    x, y = np.asarray(predicted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    return pd.DataFrame(
        {
            "ccc": concordance_correlation(torch.from_numpy(x), torch.from_numpy(y)).numpy(),
            "r": pearson_correlation(x, y),
            "mae": np.abs(x - y).mean(axis=0),
        },
        index=pd.Index(list(names), name="dimension"),
    )


class ConcordanceScore(Metric):
    """The CCC of each dimension over an epoch (`concordance_correlation`), from summed moments.

    The states are the sums n, x, y, x^2, y^2 and xy per dimension (summed across processes under
    DDP), so the epoch's CCC is that of all its clips, not a mean of batch values.

    Args:
        num_dimensions: the columns of the predictions.
        **kwargs: torchmetrics' Metric options.
    """

    full_state_update = False

    def __init__(self, num_dimensions: int = 3, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_state(
            "moments", default=torch.zeros(6, num_dimensions, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch's predictions and targets `(batch, dimensions)` to the sums."""
        x, y = predicted.detach().double(), target.detach().double()
        n = torch.full_like(x[0], float(len(x)))
        self.moments += torch.stack([n, x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0), (x * y).sum(0)])

    def compute(self) -> torch.Tensor:
        """Return the CCC of each dimension, float32 (0 where undefined or without clips)."""
        n, sx, sy, sxx, syy, sxy = self.moments
        n = n.clamp_min(1.0)
        mean_x, mean_y = sx / n, sy / n
        var_x, var_y, cov = sxx / n - mean_x**2, syy / n - mean_y**2, sxy / n - mean_x * mean_y
        denominator = var_x + var_y + (mean_x - mean_y) ** 2
        ccc = torch.where(denominator > 0, 2.0 * cov / denominator.clamp_min(1e-12), torch.zeros_like(cov))
        return ccc.float()
