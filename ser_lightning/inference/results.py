"""What scoring a file gives: its mean probabilities, each window's, and the answer they make.

`Predictor` makes a `FilePrediction` of every file it scores; `predict` writes them
(`inference.output`), the HTTP API answers with them. A file that cannot be scored gives an
`inference.media.InputError` instead. A model with dimensions (task `dimensional` or
`multitask`) adds the file's arousal, valence and dominance, read off the same windows' scores
(`inference.window_scores`); a `dimensional` one has no class probabilities (`has_classes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ser_lightning.calibration import UNCERTAIN
from ser_lightning.inference.timeline import Timeline


@dataclass
class FilePrediction:
    """A scored file: its mean probabilities and the probabilities of each window (and dimensions)."""

    path: str
    labels: list[str]  # empty for a task=dimensional model
    probabilities: np.ndarray | None  # (K,) mean over windows; None: a task=dimensional model
    window_probabilities: np.ndarray | None  # (W, K)
    window_spans: list[tuple[float, float]]  # seconds
    duration: float  # seconds of the decoded file
    timeline: Timeline | None = None  # speech segments over time (timeline mode)
    # below this top probability the answer is `uncertain` instead of an emotion (0: never)
    min_confidence: float = 0.0
    # the conformal set of emotions, most probable first, and the coverage it was fitted for
    # (ser_lightning.conformal); None when the checkpoint has no conformal record
    prediction_set: list[str] | None = None
    set_coverage: float | None = None
    # arousal, valence and dominance on the training corpus's scale, the mean over windows
    # (WindowScores.mean_dimensions), of a task=dimensional|multitask model; None for a categorical one
    dimensions: dict[str, float] | None = None
    window_dimensions: np.ndarray | None = None  # (W, 3) each window's
    dimension_scale: dict | None = None  # the rating scale {"low", "high"} of the dimensions

    @property
    def has_classes(self) -> bool:
        """Whether the model gives emotion classes (False for task=dimensional)."""
        return self.probabilities is not None

    @property
    def windows(self) -> int:
        """The windows scored."""
        return len(self.window_spans)

    @property
    def best(self) -> str:
        """The most probable emotion, whatever its probability."""
        return self.labels[int(self.probabilities.argmax())]

    @property
    def predicted(self) -> str:
        """The most probable emotion, or `uncertain` when its probability is below min_confidence."""
        return UNCERTAIN if self.confidence < self.min_confidence else self.best

    @property
    def confidence(self) -> float:
        """The top probability: that of the most probable emotion."""
        return float(self.probabilities.max())
