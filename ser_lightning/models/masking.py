"""Padded batches of variable-length clips: masks, and layers that ignore what lies past a clip's end.

A batch of clips of different lengths is padded to its longest one and comes with each clip's
`lengths` (frames along the last axis of `(batch, C, F, T)` features). A network that takes
`lengths` must give every clip the output it would give that clip alone. The helpers here keep
that true layer by layer:

- `zero_beyond` sets everything past a clip's end to 0, as the zero padding of a convolution
  sees it beyond the end of a clip run alone (done before every convolution);
- `masked_max_pool` fills the padding with -inf before a ceil-mode max pool, so a window that
  straddles a clip's end takes the maximum of its real frames only, and returns the pooled
  lengths;
- `run_lstm` packs the sequences, so a backward LSTM starts at each clip's own last frame;
- `masked_mean` and `masked_softmax` average or weigh real frames only; `key_padding_mask` is
  the mask attention layers take.

BatchNorm in training mode still computes its batch statistics over the padded frames (they are
zeros); in evaluation it uses its running statistics, and a padded batch matches single clips.
Masked statistics would mean rewriting every network's BatchNorm layers; whole-clip training
groups batches by length instead, which keeps the padding to 1.4 % of an epoch's frames at
MSP-Podcast's shape (experiments/benchmarks/results/variable_length_scale.md).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


def lengths_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """Mark each clip's real frames.

    Args:
        lengths: `(batch,)` frame counts.
        size: The padded number of frames.

    Returns:
        `(batch, size)` bool, True on real frames.
    """
    return torch.arange(size, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def pooled_lengths(lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """Frame counts after a ceil-mode pooling by `factor` (unchanged for a factor of 1).

    Returns:
        `ceil(lengths / factor)`.
    """
    return lengths if factor <= 1 else torch.div(lengths + factor - 1, factor, rounding_mode="floor")


def zero_beyond(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Set every frame past a clip's end to 0 (frames on the last axis).

    Args:
        x: `(batch, ..., T)`.
        lengths: `(batch,)` frame counts.

    Returns:
        `x` with its padding zeroed.
    """
    mask = lengths_mask(lengths, x.size(-1))
    return x.masked_fill(~mask.view(x.size(0), *([1] * (x.dim() - 2)), x.size(-1)), 0.0)


def masked_max_pool(
    pool: nn.Module, x: torch.Tensor, lengths: torch.Tensor, factor: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max-pool real frames only, and zero the padding of the result.

    Args:
        pool: The (ceil-mode) max pool, or an Identity.
        x: `(batch, ..., T)`.
        lengths: `(batch,)` frame counts.
        factor: The pool's factor along time.

    Returns:
        The pooled tensor with its padding zeroed, and the pooled frame counts.
    """
    if factor <= 1:
        return zero_beyond(x, lengths), lengths
    mask = lengths_mask(lengths, x.size(-1)).view(x.size(0), *([1] * (x.dim() - 2)), x.size(-1))
    pooled = pool(x.masked_fill(~mask, float("-inf")))
    out_lengths = pooled_lengths(lengths, factor)
    return zero_beyond(pooled, out_lengths), out_lengths


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Run a batch-first LSTM over each clip's own frames (packed), padded back to `x`'s length.

    Args:
        lstm: A batch-first LSTM.
        x: `(batch, T, dim)`.
        lengths: `(batch,)` frame counts, or None for clips of equal length.

    Returns:
        The LSTM's outputs, `(batch, T, hidden)`, zero past each clip's end.
    """
    if lengths is None:
        return lstm(x)[0]
    packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over time that gives padded frames no weight.

    Args:
        scores: `(batch, T)`.
        mask: `(batch, T)` bool, True on real frames; None: every frame is real.

    Returns:
        `(batch, T)` weights summing to 1 over each clip's real frames.
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Average `(batch, T, dim)` over each clip's real frames.

    Args:
        x: `(batch, T, dim)`.
        mask: `(batch, T)` bool, True on real frames; None: the plain mean.

    Returns:
        `(batch, dim)`.
    """
    if mask is None:
        return x.mean(dim=1)
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def key_padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Turn a real-frame mask into the `key_padding_mask` of torch's attention layers.

    Args:
        mask: `(batch, T)` bool, True on real frames, or None.

    Returns:
        `(batch, T)` bool, True on the padding (the frames attention must not attend to), or None.
    """
    return None if mask is None else ~mask
