"""The SER metrics, named once: WA (accuracy), UA (mean per-class recall), macro-F1."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassRecall,
)


def ser_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """Weighted accuracy (`acc`), unweighted accuracy (`ua`) and macro-F1 (`f1`) for one stage."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "ua": MulticlassAccuracy(num_classes, average="macro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )


def per_class_recall(num_classes: int) -> MulticlassRecall:
    return MulticlassRecall(num_classes, average=None)


def confusion_matrix(num_classes: int) -> MulticlassConfusionMatrix:
    return MulticlassConfusionMatrix(num_classes)
