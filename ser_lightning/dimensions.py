"""Arousal, valence and dominance: their names, each corpus's rating scale and the task settings.

The one source of these facts. Corpora rate the dimensions on their own scales: MSP-Podcast
1-7 (EmoAct, EmoVal, EmoDom of labels_consensus.csv), IEMOCAP 1-5 (the mean `act`, `val`,
`dom` of a turn's evaluators), and the demo corpus 1-5 (targets computed from the synthesiser's
design, `ser_lightning.demo_corpus.dimensions`). The utterance table keeps each corpus's own
values; training sees them normalised to **[-1, 1]** (`DimensionScale.normalise`: the scale's
low end is -1, its high end +1), the network's dimension outputs lie in [-1, 1] (tanh), and
predictions are reported back on the corpus's scale (`DimensionScale.denormalise`). The scale a
model was trained on is stored in its checkpoint as plain data (`DimensionScale.to_dict`).

`task` (conf/task/): `categorical` (emotion classes only, the default), `dimensional` (the three
dimensions only) or `multitask` (both, the dimension loss weighted by `dimension_weight`). The
dimension loss is 1 - CCC per dimension, averaged (`loss: ccc`, the field's usual choice), or
the mean squared error of the normalised values (`loss: mse`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only: the ONNX backend reads DIMENSIONS and scales without torch
    import numpy as np
    import torch

    # a rating or ratings: what the scale maps, kept of the same kind
    Rating = float | np.ndarray | torch.Tensor

# The dimensions, in the order of every target and prediction vector and table column.
DIMENSIONS: tuple[str, ...] = ("arousal", "valence", "dominance")
NUM_DIMENSIONS = len(DIMENSIONS)

# Each corpus's rating scale (low, high), by `data.corpus` name; "demo" is the built-in corpus.
CORPUS_SCALES: dict[str, tuple[float, float]] = {
    "msp_podcast": (1.0, 7.0),
    "iemocap": (1.0, 5.0),
    "demo": (1.0, 5.0),
}

TASKS: tuple[str, ...] = ("categorical", "dimensional", "multitask")
DIMENSION_LOSSES: tuple[str, ...] = ("ccc", "mse")


@dataclass(frozen=True)
class DimensionScale:
    """A rating scale `[low, high]` and the map between it and [-1, 1].

    Attributes:
        low: the scale's lowest rating (normalised to -1).
        high: the scale's highest rating (normalised to +1).
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidSetting(f"dimension scale {name}={value!r} must be a finite number")
        if not self.low < self.high:
            raise InvalidSetting(f"dimension scale [{self.low}, {self.high}] must have low < high")

    def normalise(self, values: Rating) -> Rating:
        """Map ratings on this scale to [-1, 1] (low -> -1, high -> +1).

        Args:
            values: ratings (a number, numpy array or tensor).

        Returns:
            The normalised values, of the same kind.
        """
        return 2.0 * (values - self.low) / (self.high - self.low) - 1.0

    def denormalise(self, values: Rating) -> Rating:
        """Map normalised values back to this scale (the inverse of `normalise`).

        Args:
            values: values in [-1, 1] (a number, numpy array or tensor).

        Returns:
            The ratings on this scale, of the same kind.
        """
        return self.low + (values + 1.0) * (self.high - self.low) / 2.0

    def to_dict(self) -> dict:
        """The plain form a checkpoint stores.

        Returns:
            `{"low": float, "high": float}`.
        """
        return {"low": float(self.low), "high": float(self.high)}

    @classmethod
    def from_dict(cls, record: dict, where: str = "the checkpoint") -> DimensionScale:
        """The scale of a stored record, checked: plain numbers only.

        Args:
            record: `{"low": ..., "high": ...}` as `to_dict` wrote it.
            where: the file the record came from, for the message.

        Returns:
            The scale.

        Raises:
            InvalidSetting: If the record is not two finite numbers low < high.
        """
        if not isinstance(record, dict) or set(record) != {"low", "high"}:
            raise InvalidSetting(
                f"{where}: dimension_scale {record!r} must be {{'low': number, 'high': number}}; "
                "retrain with task=dimensional or multitask to write it"
            )
        return cls(record["low"], record["high"])


def scale_for(corpus: str, demo: bool = False) -> DimensionScale | None:
    """The rating scale of a corpus, or None when it has no dimensional ratings.

    Args:
        corpus: the `data.corpus` name.
        demo: the built-in demo corpus (read by the RAVDESS parser, rated on its own scale).

    Returns:
        The scale, or None.
    """
    name = "demo" if demo else corpus
    return DimensionScale(*CORPUS_SCALES[name]) if name in CORPUS_SCALES else None


def no_dimensions_message(corpus: str) -> str:
    """The refusal of a dimensional task on a corpus without ratings, naming the fix.

    Args:
        corpus: the `data.corpus` name.

    Returns:
        The message.
    """
    rated = ", ".join(f"data={name}" for name in CORPUS_SCALES)
    return (
        f"data.corpus={corpus} has no arousal/valence/dominance ratings, so task=dimensional and "
        f"task=multitask cannot train on it; use task=categorical, or a corpus with ratings ({rated})"
    )


@dataclass(frozen=True)
class TaskSettings:
    """What a model learns: `task.name`, the dimension loss and its weight (conf/task/).

    Attributes:
        name: categorical, dimensional or multitask.
        loss: ccc (1 - CCC per dimension, averaged) or mse.
        dimension_weight: the dimension loss's weight beside the category loss (multitask).
    """

    name: str = "categorical"
    loss: str = "ccc"
    dimension_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in TASKS:
            raise InvalidSetting(f"task.name={self.name!r} must be one of {', '.join(TASKS)}")
        if self.loss not in DIMENSION_LOSSES:
            raise InvalidSetting(f"task.loss={self.loss!r} must be one of {', '.join(DIMENSION_LOSSES)}")
        weight = self.dimension_weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise InvalidSetting(f"task.dimension_weight={weight!r} must be a number > 0")

    @classmethod
    def of(cls, task: dict | None) -> TaskSettings:
        """The settings of a `task` config (None: categorical).

        Args:
            task: the plain `task` config, or None.

        Returns:
            The checked settings.

        Raises:
            InvalidSetting: If it names keys other than name, loss and dimension_weight.
        """
        if task is None:
            return cls()
        unknown = set(task) - {"name", "loss", "dimension_weight"}
        if unknown:
            raise InvalidSetting(
                f"task has unknown keys {sorted(unknown)}; it takes name, loss, dimension_weight"
            )
        return cls(**task)

    @property
    def has_dimensions(self) -> bool:
        """Whether the model predicts the dimensions."""
        return self.name != "categorical"

    @property
    def has_categories(self) -> bool:
        """Whether the model predicts the emotion classes."""
        return self.name != "dimensional"

    @property
    def monitor(self) -> str:
        """The validation value best checkpoints and early stopping follow (maximised).

        `val/ua` for categorical and multitask (the classes stay the product's first answer,
        and UA keeps multitask runs comparable with categorical ones); `val/ccc` for dimensional.
        """
        return "val/ccc" if self.name == "dimensional" else "val/ua"


def dimension_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str = "ccc") -> torch.Tensor:
    """The loss of normalised dimension predictions `(batch, 3)` against targets.

    Args:
        predicted: the model's values in [-1, 1].
        target: the normalised ratings.
        kind: `ccc`: mean over dimensions of 1 - CCC (`metrics.concordance_correlation`, over the
            batch); `mse`: mean squared error.

    Returns:
        The scalar loss.
    """
    import torch  # here, not at the top: the ONNX backend reads this module without torch

    if kind == "mse":
        return torch.mean((predicted - target) ** 2)
    # here, not at the top: the loss is for training, and predict and serve load this module
    # without importing torchmetrics (ser_lightning.metrics)
    from ser_lightning.metrics import concordance_correlation

    return torch.mean(1.0 - concordance_correlation(predicted, target))


def task_loss(
    task: TaskSettings,
    category_loss: torch.Tensor | None,
    predicted: torch.Tensor | None,
    target: torch.Tensor | None,
) -> torch.Tensor:
    """The training loss of a task: the category loss, the dimension loss, or their weighted sum.

    Args:
        task: the task settings.
        category_loss: the class loss (None for task dimensional).
        predicted: the normalised dimension predictions (None for task categorical).
        target: the normalised ratings of the batch.

    Returns:
        categorical: the category loss; dimensional: the dimension loss; multitask: category loss
        + dimension_weight x dimension loss.

    Raises:
        InvalidSetting: If the task has dimensions but the batch carries no ratings.
    """
    if not task.has_dimensions:
        return category_loss
    if target is None:
        raise InvalidSetting(
            f"task={task.name} needs each batch's ratings (batch['dimensions']), which come from a data "
            "module over a corpus with arousal/valence/dominance ratings"
        )
    dimensional = dimension_loss(predicted, target.to(predicted.dtype), task.loss)
    if not task.has_categories:
        return dimensional
    return category_loss + task.dimension_weight * dimensional
