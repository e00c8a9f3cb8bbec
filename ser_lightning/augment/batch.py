"""The device-side augmentation a LightningModule applies to a training batch: SpecAugment, then mixup."""

from __future__ import annotations

import torch
from torch import nn

from ser_lightning.augment.mixup import MixedBatch, Mixup
from ser_lightning.augment.spectrogram import SpecAugment
from ser_lightning.utils.errors import InvalidSetting


class BatchAugmentation(nn.Module):
    """Normalised features and labels in, a MixedBatch out; the identity in eval mode.

    Holds no parameters or buffers, so checkpoints are the same with or without it and a model
    trained with augmentation evaluates and predicts exactly like one trained without.
    """

    def __init__(self, spectrogram: SpecAugment | None = None, mixup: Mixup | None = None):
        super().__init__()
        self.spectrogram = spectrogram
        self.mixup = mixup

    def forward(
        self, features: torch.Tensor, target: torch.Tensor, frame_lengths: torch.Tensor | None = None
    ) -> MixedBatch:
        """Apply SpecAugment, then mixup, to a training batch; pass it through unchanged in eval mode.

        Args:
            features: Normalised features, `(batch, channels, n_features, n_frames)`.
            target: The batch's integer labels.
            frame_lengths: The frames of each clip of a padded batch (None: clips fill the batch):
                SpecAugment's time masks stay within them.

        Raises:
            InvalidSetting: when mixup is asked to mix a padded batch of clips of different lengths.

        Returns:
            The (possibly masked and mixed) batch and how to score logits against it.
        """
        if not self.training:
            return MixedBatch(features, target)
        if self.spectrogram is not None:
            features = (
                self.spectrogram(features)
                if frame_lengths is None
                else self.spectrogram(features, frame_lengths)
            )
        if self.mixup is not None and frame_lengths is not None:
            raise InvalidSetting(
                "augmentation.mixup mixes clips of one length; with data.duration=null (whole clips) use "
                "augmentation=specaugment or none, or set data.duration to a clip length in seconds"
            )
        if self.mixup is not None:
            return self.mixup(features, target)
        return MixedBatch(features, target)
