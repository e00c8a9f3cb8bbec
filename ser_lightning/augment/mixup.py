"""Mixup (Zhang et al., 2018) on a batch of features, with the loss mixed by the same weight."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ser_lightning.utils.errors import InvalidSetting

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class MixedBatch:
    """Network inputs of a (possibly) mixed batch and how to score logits against it.

    `target` is always the batch's own labels (metrics use them); when mixed, `partner` holds
    the labels of the examples mixed in with weight 1 − `weight`.
    """

    features: torch.Tensor
    target: torch.Tensor
    partner: torch.Tensor | None = None
    weight: float = 1.0

    @property
    def mixed(self) -> bool:
        """Whether examples were mixed, i.e. there are partner labels to score against."""
        return self.partner is not None

    def loss(self, logits: torch.Tensor, loss_fn: LossFn) -> torch.Tensor:
        """Score logits against the batch's labels, mixed by the batch's weight when it was mixed.

        Computes weight · loss(logits, target) + (1 − weight) · loss(logits, partner), or just
        loss(logits, target) for an unmixed batch.

        Args:
            logits: The network's output for `features`.
            loss_fn: A loss taking `(logits, labels)`, e.g. cross-entropy.

        Returns:
            The (mixed) loss.
        """
        if self.partner is None:
            return loss_fn(logits, self.target)
        return self.weight * loss_fn(logits, self.target) + (1.0 - self.weight) * loss_fn(
            logits, self.partner
        )


class Mixup(nn.Module):
    """Blend each example with another of the same batch: x = w·x_i + (1 − w)·x_j.

    One weight per batch, w ~ Beta(alpha, alpha), folded to w >= 0.5 so that an example's own
    label stays the larger part of its mix (metrics are computed on the batch's own labels).
    `p` is the probability that a batch is mixed. Does nothing in eval mode.
    """

    def __init__(self, alpha: float = 0.2, p: float = 1.0):
        super().__init__()
        if alpha <= 0:
            raise InvalidSetting(
                f"augmentation.mixup.alpha={alpha} must be > 0 (it is the Beta distribution's parameter)"
            )
        if not 0.0 <= p <= 1.0:
            raise InvalidSetting(f"augmentation.mixup.p={p} must be a probability in [0, 1]")
        self.alpha = float(alpha)
        self.p = float(p)

    def sample_weight(self) -> float:
        """Draw a batch's mixing weight from Beta(alpha, alpha), folded to be >= 0.5.

        Returns:
            The weight of each example's own features and label.
        """
        # torch's CPU generator, seeded by seed_everything: the same seed mixes the same way.
        weight = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        return max(weight, 1.0 - weight)

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> MixedBatch:
        """Mix the batch with a shuffled copy of itself, with probability `p`, in training mode.

        Batches of fewer than two examples, batches not drawn for mixing and batches in eval
        mode come back unmixed.

        Args:
            features: The batch's features; the first dimension is the batch.
            target: The batch's integer labels.

        Returns:
            The mixed features with the labels and weight to score them against.
        """
        if not self.training or features.shape[0] < 2 or float(torch.rand(())) >= self.p:
            return MixedBatch(features, target)
        weight = self.sample_weight()
        order = torch.randperm(features.shape[0], device=features.device)
        mixed = weight * features + (1.0 - weight) * features[order]
        return MixedBatch(mixed, target, target[order], weight)

    def extra_repr(self) -> str:
        """Describe the settings in the module's repr.

        Returns:
            `alpha` and `p`.
        """
        return f"alpha={self.alpha}, p={self.p}"
