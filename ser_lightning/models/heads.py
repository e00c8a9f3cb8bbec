"""The output heads: emotion-class logits and the three dimensions, read off the network's last layer.

Every network family (the from-scratch networks and the SSL heads) ends in one linear layer
sized by its `num_classes` argument. A task with dimensions widens that layer by three outputs
(`OutputHeads.width`), so the regression head shares everything below it with the classifier,
on every family, without a second copy of each network's pooling. `OutputHeads` splits the
layer's outputs into the class logits (task `categorical`, `multitask`) and the dimensions
(task `dimensional`, `multitask`), the latter squashed into [-1, 1] (tanh), the range targets are
normalised to (ser_lightning.dimensions). It has no weights of its own, so a categorical
model's state dict is what it was before dimensions existed.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_lightning.dimensions import NUM_DIMENSIONS, TaskSettings


class OutputHeads(nn.Module):
    """Split a network's outputs `(batch, width)` into class logits and dimensions.

    Args:
        num_classes: the emotion classes of the run.
        task: what the model predicts (`TaskSettings`).

    Attributes:
        num_classes: class logits read off (0 for task `dimensional`).
        num_dimensions: dimension values read off (0 for task `categorical`).
    """

    def __init__(self, num_classes: int, task: TaskSettings):
        super().__init__()
        self.num_classes = num_classes if task.has_categories else 0
        self.num_dimensions = NUM_DIMENSIONS if task.has_dimensions else 0

    @property
    def width(self) -> int:
        """The outputs the network's last layer must give."""
        return self.num_classes + self.num_dimensions

    def forward(self, outputs: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Read the class logits and the dimensions off the network's outputs.

        Args:
            outputs: `(batch, width)`.

        Returns:
            `(logits (batch, classes) or None, dimensions (batch, 3) in [-1, 1] or None)`.
        """
        logits = outputs[:, : self.num_classes] if self.num_classes else None
        dimensions = torch.tanh(outputs[:, self.num_classes : self.width]) if self.num_dimensions else None
        return logits, dimensions
