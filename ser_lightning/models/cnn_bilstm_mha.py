"""CNN-BiLSTM-MHA (seed 001): residual 1-D convolutions, BiLSTM, multi-head self-attention.

Designed for 68 hand-crafted features per frame, it treats every frame's feature vector as the
convolution channels (channels × n_features of any extractor), so it runs on log-mel or MFCC
frames as well.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_lightning.models.layers import (
    AttentionPooling,
    ResidualConvBlock,
    SingleSampleSafeBatchNorm1d,
    init_weights,
)
from ser_lightning.models.masking import key_padding_mask, lengths_mask, run_lstm, zero_beyond
from ser_lightning.models.requirements import InputRequirement
from ser_lightning.utils.errors import InvalidSetting


class CNNBiLSTMMHA(nn.Module):
    """Residual Conv1d blocks → 3-layer BiLSTM → 8-head self-attention → pooling → MLP head.

    The attention output is added back to the LSTM sequence and layer-normalised (the usual
    post-norm residual), then attention pooling picks the frames that matter: with the
    recipe's zero-padding to 862 frames most frames of a short clip are padding, which a plain
    mean would average in. The MLP head is Linear → BatchNorm → GELU → Dropout → Linear.
    """

    input_requirement = InputRequirement()  # any (channels, n_features, n_frames)
    accepts_lengths = True  # forward(x, lengths): padded batches of variable-length clips

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        cnn_channels: tuple[int, ...] | list[int] = (128, 256),
        kernel_size: int = 3,
        pool: int = 2,
        lstm_hidden: int = 256,
        lstm_layers: int = 3,
        num_heads: int = 8,
        mlp_dim: int = 256,
        dropout: float = 0.3,
    ):
        super().__init__()
        channels, n_features, _ = input_shape
        if (2 * lstm_hidden) % num_heads:
            raise InvalidSetting(
                f"model.net.num_heads={num_heads} must divide the BiLSTM output size 2 × lstm_hidden = {2 * lstm_hidden}"
            )
        blocks, in_ch = [], channels * n_features
        for out_ch in cnn_channels:
            blocks.append(
                ResidualConvBlock(in_ch, out_ch, kernel_size, dropout, pool, activation=nn.GELU, dims=1)
            )
            in_ch = out_ch
        self.cnn = nn.Sequential(*blocks)
        self.lstm = nn.LSTM(
            in_ch,
            lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        dim = 2 * lstm_hidden
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.attention_norm = nn.LayerNorm(dim)
        self.pooling = AttentionPooling(dim)
        self.head = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            SingleSampleSafeBatchNorm1d(mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return the logits `(batch, num_classes)` of `(batch, C, F, T)` features (C * F conv channels).

        With `lengths` (`(batch,)` frame counts of a padded batch), each clip's logits are those
        it gets alone: padding is zeroed before convolutions, left out of pooling, packed out of
        the LSTM, masked out of the self-attention's keys and of the attention pooling.
        """
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t)
        if lengths is None:
            x = self.cnn(x)
        else:
            x = zero_beyond(x, lengths)
            for block in self.cnn:
                x, lengths = block.forward_masked(x, lengths)
        x = run_lstm(self.lstm, x.transpose(1, 2), lengths)  # (B, T', 2 * hidden)
        mask = None if lengths is None else lengths_mask(lengths, x.size(1))
        attended, _ = self.attention(x, x, x, key_padding_mask=key_padding_mask(mask), need_weights=False)
        x = self.attention_norm(x + attended)
        return self.head(self.pooling(x, mask))
