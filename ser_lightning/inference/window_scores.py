"""What one forward pass gives for a run of windows: class probabilities and dimensions.

A network of task `categorical` gives each window its class probabilities, one of task
`dimensional` its arousal, valence and dominance on the training corpus's rating scale, and one
of task `multitask` both, from the same pass (ser_lightning.dimensions). Both backends
(`inference.predictor.Predictor` on PyTorch, `inference.onnx_backend.OnnxPredictor` on
onnxruntime) score windows into a `WindowScores`, and the HTTP service's batcher hands each
request its rows of one. A file's scores, a speech segment's and an upload's are then read off
the same way: `mean_probabilities` and `mean_dimensions`, the mean over the windows, defined here
once. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ser_lightning.dimensions import DIMENSIONS, NUM_DIMENSIONS


@dataclass(frozen=True)
class WindowScores:
    """The scores of W windows, in order; at least one of the two is set.

    Attributes:
        probabilities: `(W, K)` class probabilities, or None for a model without classes
            (task `dimensional`).
        dimensions: `(W, 3)` arousal, valence and dominance on the training corpus's scale
            (`DIMENSIONS` order), or None for a model without them (task `categorical`).
    """

    probabilities: np.ndarray | None
    dimensions: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.probabilities is None and self.dimensions is None:
            raise ValueError("window scores need class probabilities, dimensions or both")
        if self.probabilities is not None and self.dimensions is not None:
            if len(self.probabilities) != len(self.dimensions):
                raise ValueError(
                    f"{len(self.probabilities)} windows of probabilities but {len(self.dimensions)} of dimensions"
                )

    @classmethod
    def empty(cls, classes: int, dimensions: bool) -> WindowScores:
        """The scores of no windows, shaped as a model's.

        Args:
            classes: the model's classes (0: none, task `dimensional`).
            dimensions: whether the model gives dimensions.

        Returns:
            Zero rows of each output the model has.
        """
        return cls(
            np.zeros((0, classes), np.float32) if classes else None,
            np.zeros((0, NUM_DIMENSIONS), np.float32) if dimensions else None,
        )

    @classmethod
    def concatenate(cls, parts: Sequence[WindowScores]) -> WindowScores:
        """Join the scores of consecutive runs of windows (at least one).

        Returns:
            Their rows, in order.
        """
        first = parts[0]
        return cls(
            None if first.probabilities is None else np.concatenate([p.probabilities for p in parts]),
            None if first.dimensions is None else np.concatenate([p.dimensions for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.probabilities if self.probabilities is not None else self.dimensions)

    def __getitem__(self, rows: slice | np.ndarray) -> WindowScores:
        """Some windows' scores: a slice, or an array of window indices.

        Returns:
            Those rows of each output.
        """
        return WindowScores(
            None if self.probabilities is None else self.probabilities[rows],
            None if self.dimensions is None else self.dimensions[rows],
        )

    def mean_probabilities(self) -> np.ndarray | None:
        """The class probabilities of a clip: the mean over its windows.

        Returns:
            `(K,)`, or None for a model without classes.
        """
        return None if self.probabilities is None else self.probabilities.mean(axis=0)

    def mean_dimensions(self) -> dict[str, float] | None:
        """The dimensions of a clip (a file, an upload, a speech segment): the mean over its windows.

        Returns:
            `{arousal, valence, dominance}` on the training corpus's scale, or None for a model
            without dimensions.
        """
        if self.dimensions is None:
            return None
        mean = np.asarray(self.dimensions, np.float64).mean(axis=0)
        return {name: float(mean[i]) for i, name in enumerate(DIMENSIONS)}
