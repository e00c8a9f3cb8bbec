"""Building blocks shared by the networks."""

from __future__ import annotations

import math

import torch
from torch import nn

from ser_lightning.models.masking import masked_max_pool, masked_softmax, zero_beyond
from ser_lightning.utils.errors import InvalidSetting


class ResidualConvBlock(nn.Module):
    """conv-BN-act-conv-BN plus a (1x1 projected) shortcut, then act, max-pool and dropout.

    `dims=2` convolves a `(batch, C, F, T)` spectrogram (ACNT), `dims=1` a `(batch, C, T)`
    sequence of frame vectors (CNN-BiLSTM-MHA). Pooling uses ceil_mode so that a dimension of 1
    stays 1 instead of vanishing on small inputs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        dropout: float = 0.1,
        pool: int = 2,
        activation: type[nn.Module] = nn.ReLU,
        dims: int = 2,
    ):
        super().__init__()
        if dims not in (1, 2):
            raise InvalidSetting(f"ResidualConvBlock convolves over 1 or 2 dimensions, not {dims}")
        if dims == 1:
            conv, norm, max_pool = nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d
        else:
            conv, norm, max_pool = nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d
        padding = kernel_size // 2
        self.body = nn.Sequential(
            conv(in_channels, out_channels, kernel_size, padding=padding, bias=False),
            norm(out_channels),
            activation(),
            conv(out_channels, out_channels, kernel_size, padding=padding, bias=False),
            norm(out_channels),
        )
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(conv(in_channels, out_channels, 1, bias=False), norm(out_channels))
        )
        self.act = activation()
        self.pool = max_pool(pool, ceil_mode=True) if pool > 1 else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.pool_factor = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block's output: `(batch, C, *spatial)` to `(batch, out_channels, *pooled)`."""
        return self.dropout(self.pool(self.act(self.body(x) + self.shortcut(x))))

    def forward_masked(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the block on a padded batch as each clip would run alone (time on the last axis).

        The padding is zeroed before each convolution and left out of the max pool
        (`ser_lightning.models.masking`).

        Args:
            x: `(batch, C, *spatial)`, zero past each clip's end.
            lengths: `(batch,)` frame counts.

        Returns:
            The block's output, zero past each clip's end, and the pooled frame counts.
        """
        hidden = zero_beyond(self.body[2](self.body[1](self.body[0](x))), lengths)
        summed = self.act(self.body[4](self.body[3](hidden)) + self.shortcut(x))
        pooled, lengths = masked_max_pool(self.pool, summed, lengths, self.pool_factor)
        return self.dropout(pooled), lengths


def pooled_size(size: int, factor: int, times: int) -> int:
    """Size of a dimension after `times` ceil-mode poolings by `factor`.

    Returns:
        `size` divided by `factor` and rounded up, `times` over (`size` itself when
        `factor` is 1).
    """
    for _ in range(times):
        size = math.ceil(size / factor) if factor > 1 else size
    return size


class SinusoidalPositionalEncoding(nn.Module):
    """Fixed sine/cosine position codes added to a `(batch, time, dim)` sequence."""

    def __init__(self, dim: int, max_len: int = 512, dropout: float = 0.1):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * div)
        table[:, 1::2] = torch.cos(position * div[: dim // 2])
        self.register_buffer("table", table, persistent=False)
        self.max_len = max_len
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return `x` plus the codes of positions `0..time-1`, after dropout; same shape."""
        return self.dropout(x + self.table[: x.size(1)].unsqueeze(0))


def init_weights(module: nn.Module) -> None:
    """Kaiming for convolutions (ReLU family), Xavier for linear layers, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Conv1d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class AttentionPooling(nn.Module):
    """Weighted sum over time, `(batch, time, dim)` to `(batch, dim)`, weights softmax(score(x)).

    hidden=None scores each frame with one linear layer (Linear(dim, 1)); an integer adds a
    tanh layer first (the additive attention of the Keras-era recipes).
    """

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        self.score = (
            nn.Linear(dim, 1)
            if hidden is None
            else nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return the attention-weighted sum over time: `(batch, time, dim)` to `(batch, dim)`.

        `mask` (`(batch, time)` bool, True on real frames) gives padded frames no weight.
        """
        weights = masked_softmax(self.score(x).squeeze(-1), mask)  # (batch, time)
        return torch.bmm(weights.unsqueeze(1), x).squeeze(1)


class SingleSampleSafeBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that normalises a lone training sample with its running statistics.

    Batch statistics of one sample are undefined (torch raises), and the last training batch
    holds one clip whenever the train split is 1 more than a multiple of the batch size.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return `x` batch-normalised; a lone training sample uses (and leaves) the running statistics."""
        if self.training and x.size(0) == 1:
            return nn.functional.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        return super().forward(x)


def attentive_statistics(x: torch.Tensor, weights: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Weighted mean and standard deviation over time, concatenated: `(batch, 2 * dim)`.

    The variance is E_w[x²] − E_w[x]², clamped at `eps` before the square root so that
    constant frames give a finite gradient. Uniform weights give the plain mean and the
    population (biased) standard deviation.

    Args:
        x: The frames, `(batch, time, dim)`.
        weights: `(batch, time)` or `(batch, time, dim)`, each summing to 1 over time.
        eps: The smallest variance taken before the square root.

    Returns:
        The weighted means followed by the weighted standard deviations, `(batch, 2 * dim)`.
    """
    if weights.dim() == 2:
        weights = weights.unsqueeze(-1)
    mean = (weights * x).sum(dim=1)
    variance = (weights * x.square()).sum(dim=1) - mean.square()
    return torch.cat([mean, variance.clamp(min=eps).sqrt()], dim=-1)


class AttentiveStatisticsPooling(nn.Module):
    """Attentive statistics pooling (x-vector ASP): `(batch, time, dim)` to `(batch, 2 * dim)`.

    One score per frame, `Linear(dim, attention_dim) → tanh → Linear(attention_dim, 1)`,
    softmax over time; then the weighted mean and standard deviation of the frames.
    """

    def __init__(self, dim: int, attention_dim: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, attention_dim), nn.Tanh(), nn.Linear(attention_dim, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Return the attentive mean and std over time: `(batch, time, dim)` to `(batch, 2 * dim)`.

        `mask` (`(batch, time)` bool, True on real frames) gives padded frames no weight.
        """
        weights = masked_softmax(self.score(x).squeeze(-1), mask)  # (batch, time)
        return attentive_statistics(x, weights)
