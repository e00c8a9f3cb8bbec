"""CRNN with attention pooling: convolutions, a bidirectional LSTM over time, attention over time.

One class serves two seed recipes (the model configs choose):
- `crnn_attn` (seed 003): 2-D convolutions over log-mel patches, Conv2d(C→32)→ReLU→BatchNorm
  →Dropout2d(0.2)→MaxPool and Conv2d(32→64) likewise, the remaining frequency axis folded into
  the features of each frame, BiLSTM(128), Dropout(0.2), attention pooling (Linear(256→1),
  softmax over time, weighted sum), Linear(256→classes).
- `crnn_attn_mfcc` (seed 002, the Keras-era variant): 1-D convolutions along time over whole
  MFCC frames (each frame's coefficients are the conv channels), stacked BiLSTM layers and
  tanh attention. Its softmax output is the softmax inside the cross-entropy loss here: the
  network returns logits, like every network in this package.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_lightning.models.layers import AttentionPooling, init_weights, pooled_size
from ser_lightning.models.masking import lengths_mask, masked_max_pool, run_lstm, zero_beyond
from ser_lightning.models.requirements import InputRequirement
from ser_lightning.utils.errors import InvalidSetting

FRONTENDS = ("conv2d", "conv1d")


def _conv_block(
    dims: int, in_ch: int, out_ch: int, kernel_size: int, dropout: float, pool: int
) -> nn.Sequential:
    """Conv → ReLU → BatchNorm → Dropout → MaxPool, in 1-D or 2-D (the recipes' order).

    Returns:
        The block as one Sequential (MaxPool replaced by Identity when `pool` is 1).
    """
    conv, norm, drop, max_pool = (
        (nn.Conv2d, nn.BatchNorm2d, nn.Dropout2d, nn.MaxPool2d)
        if dims == 2
        else (nn.Conv1d, nn.BatchNorm1d, nn.Dropout, nn.MaxPool1d)
    )
    return nn.Sequential(
        conv(in_ch, out_ch, kernel_size, padding=kernel_size // 2),
        nn.ReLU(),
        norm(out_ch),
        drop(dropout),
        # ceil_mode keeps a dimension of 1 at 1, so short or narrow inputs still fit.
        max_pool(pool, ceil_mode=True) if pool > 1 else nn.Identity(),
    )


class CRNNAttention(nn.Module):
    """Conv blocks → BiLSTM → dropout → attention pooling over time → linear classifier."""

    input_requirement = InputRequirement()  # any (channels, n_features, n_frames)
    accepts_lengths = True  # forward(x, lengths): padded batches of variable-length clips

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        frontend: str = "conv2d",
        conv_channels: tuple[int, ...] | list[int] = (32, 64),
        kernel_size: int = 3,
        conv_dropout: float = 0.2,
        pool: int = 2,
        lstm_hidden: int = 128,
        lstm_layers: int = 1,
        lstm_dropout: float = 0.0,
        dropout: float = 0.2,
        attention_dim: int | None = None,
    ):
        super().__init__()
        if frontend not in FRONTENDS:
            raise InvalidSetting(f"model.net.frontend={frontend!r} must be one of {FRONTENDS}")
        channels, n_features, _ = input_shape
        self.frontend = frontend
        dims = 2 if frontend == "conv2d" else 1
        in_ch = channels if dims == 2 else channels * n_features
        blocks = []
        for out_ch in conv_channels:
            blocks.append(_conv_block(dims, in_ch, out_ch, kernel_size, conv_dropout, pool))
            in_ch = out_ch
        self.cnn = nn.Sequential(*blocks)
        self.pool = pool
        frame_dim = in_ch * pooled_size(n_features, pool, len(conv_channels)) if dims == 2 else in_ch
        self.lstm = nn.LSTM(
            frame_dim,
            lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=lstm_dropout if lstm_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.attention = AttentionPooling(2 * lstm_hidden, attention_dim)
        self.classifier = nn.Linear(2 * lstm_hidden, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return the logits `(batch, num_classes)` of `(batch, C, F, T)` features.

        With `lengths` (`(batch,)` frame counts of a padded batch), each clip's logits are those
        it gets alone: padding is zeroed before convolutions, left out of pooling, packed out of
        the LSTM and given no attention weight.
        """
        b, c, f, t = x.shape
        x = x if self.frontend == "conv2d" else x.reshape(b, c * f, t)
        if lengths is None:
            x = self.cnn(x)
        else:
            x = zero_beyond(x, lengths)
            for block in self.cnn:
                x, lengths = masked_max_pool(block[4], block[:4](x), lengths, self.pool)
        if self.frontend == "conv2d":
            x = x.permute(0, 3, 1, 2).flatten(2)  # (B, T', C' * F'): one vector per frame
        else:
            x = x.transpose(1, 2)  # (B, T', C')
        x = run_lstm(self.lstm, x, lengths)
        mask = None if lengths is None else lengths_mask(lengths, x.size(1))
        return self.classifier(self.attention(self.dropout(x), mask))
