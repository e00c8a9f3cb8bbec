"""ACNT: residual CNN front end + Transformer encoder over time (the seed-000 architecture)."""

from __future__ import annotations

import torch
from torch import nn

from ser_lightning.models.layers import (
    ResidualConvBlock,
    SinusoidalPositionalEncoding,
    init_weights,
    pooled_size,
)
from ser_lightning.models.masking import key_padding_mask, lengths_mask, masked_mean, zero_beyond
from ser_lightning.models.requirements import InputRequirement
from ser_lightning.utils.errors import InvalidSetting


class ACNT(nn.Module):
    """CNN + Transformer for `(batch, C, F, T)` features.

    Residual conv blocks (each halving F and T) → the frequency axis folded into channels →
    a linear projection to `transformer_dim` per frame → sinusoidal positions → Transformer
    encoder → mean over time → classification head. With use_transformer=False the pooled
    projected sequence goes straight to the head (the ablation the seed project ran).
    """

    input_requirement = InputRequirement()  # any (channels, n_features, n_frames)
    accepts_lengths = True  # forward(x, lengths): padded batches of variable-length clips

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        cnn_channels: tuple[int, ...] | list[int] = (16, 32, 64, 128),
        kernel_size: int = 3,
        cnn_dropout: float = 0.1,
        transformer_dim: int = 128,
        num_heads: int = 4,
        num_layers: int = 2,
        ff_dim: int = 256,
        transformer_dropout: float = 0.1,
        pe_max_len: int = 512,
        use_transformer: bool = True,
        head_dropout: float = 0.3,
    ):
        super().__init__()
        channels, n_features, n_frames = input_shape
        if transformer_dim % num_heads:
            raise InvalidSetting(
                f"model.net.transformer_dim={transformer_dim} must be divisible by num_heads={num_heads}"
            )
        blocks, in_ch = [], channels
        for out_ch in cnn_channels:
            blocks.append(ResidualConvBlock(in_ch, out_ch, kernel_size, cnn_dropout, pool=2))
            in_ch = out_ch
        self.cnn = nn.Sequential(*blocks)
        freq_out = pooled_size(n_features, 2, len(cnn_channels))
        self.seq_len = pooled_size(n_frames, 2, len(cnn_channels))
        if use_transformer and self.seq_len > pe_max_len:
            raise InvalidSetting(
                f"ACNT: the CNN leaves {self.seq_len} frames but model.net.pe_max_len={pe_max_len}; "
                f"raise pe_max_len to at least {self.seq_len}"
            )
        self.project = nn.Linear(in_ch * freq_out, transformer_dim)
        self.use_transformer = use_transformer
        self.pe_max_len = pe_max_len
        if use_transformer:
            self.positions = SinusoidalPositionalEncoding(transformer_dim, pe_max_len, transformer_dropout)
            layer = nn.TransformerEncoderLayer(
                d_model=transformer_dim,
                nhead=num_heads,
                dim_feedforward=ff_dim,
                dropout=transformer_dropout,
                batch_first=True,
                norm_first=True,
            )
            self.transformer = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.head = nn.Sequential(
            nn.LayerNorm(transformer_dim),
            nn.Dropout(head_dropout),
            nn.Linear(transformer_dim, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return the logits `(batch, num_classes)` of `(batch, C, F, T)` features.

        With `lengths` (`(batch,)` frame counts of a padded batch), each clip's logits are those
        it gets alone: padding is zeroed before convolutions, left out of pooling, masked out of
        the Transformer's keys and of the mean over time.

        Raises:
            InvalidSetting: when a batch leaves more frames than the positional table holds.
        """
        if lengths is None:
            x = self.cnn(x)  # (B, C', F', T')
        else:
            x = zero_beyond(x, lengths)
            for block in self.cnn:
                x, lengths = block.forward_masked(x, lengths)
        b, c, f, t = x.shape
        if lengths is not None and self.use_transformer and t > self.pe_max_len:
            raise InvalidSetting(
                f"ACNT: a batch leaves {t} frames after the CNN but model.net.pe_max_len={self.pe_max_len}; "
                f"raise model.net.pe_max_len to at least {t}, or cap clips with data.max_duration_s"
            )
        x = x.permute(0, 3, 1, 2).reshape(b, t, c * f)  # one vector per remaining frame
        x = self.project(x)
        mask = None if lengths is None else lengths_mask(lengths, t)
        if self.use_transformer:
            x = self.transformer(self.positions(x), src_key_padding_mask=key_padding_mask(mask))
        return self.head(masked_mean(x, mask))
