"""CNN2Ch (seed 004): a plain CNN over two input channels, MFCC and mel spectrogram."""

from __future__ import annotations

import torch
from torch import nn

from ser_lightning.models.layers import init_weights, pooled_size
from ser_lightning.models.requirements import InputRequirement


class CNN2Ch(nn.Module):
    """Three conv blocks (Conv2d → BatchNorm → ReLU → MaxPool) → flatten → FC layers with dropout.

    The two channels are one image, so the first convolution mixes MFCC and mel evidence at
    the same (row, frame) position: both must share the frame grid and the row count, which is
    what features=mfcc_mel gives.
    """

    input_requirement = InputRequirement(
        channels=2,
        fits="features=mfcc_mel (MFCC and log-mel as 2 channels on one frame grid); "
        "features=mfcc features.deltas=1 features.delta_layout=channels also gives 2 channels (MFCC and Δ)",
    )

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        conv_channels: tuple[int, ...] | list[int] = (32, 64, 128),
        kernel_size: int = 3,
        pool: int = 2,
        fc_dims: tuple[int, ...] | list[int] = (256, 128),
        dropout: float = 0.5,
    ):
        super().__init__()
        channels, n_features, n_frames = input_shape
        blocks, in_ch = [], channels
        for out_ch in conv_channels:
            blocks += [
                nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(),
                nn.MaxPool2d(pool, ceil_mode=True),
            ]
            in_ch = out_ch
        self.cnn = nn.Sequential(*blocks)
        flat = (
            in_ch
            * pooled_size(n_features, pool, len(conv_channels))
            * pooled_size(n_frames, pool, len(conv_channels))
        )
        layers, width = [], flat
        for dim in fc_dims:
            layers += [nn.Linear(width, dim), nn.ReLU(), nn.Dropout(dropout)]
            width = dim
        layers.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(nn.Flatten(), *layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits `(batch, num_classes)` of `(batch, 2, F, T)` features."""
        return self.classifier(self.cnn(x))
