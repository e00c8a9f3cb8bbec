"""Heads for stacks of pretrained speech-encoder layers: `(batch, layers, hidden, frames)` input.

The input's channels are the encoder layers kept, its features the hidden size and its time
axis the encoder frames (one frame when the features were pooled over time; `2 * hidden`
features when that pooling kept the standard deviation too). Any other features are read the
same way, so these heads also take log-mel and the other one-channel features: a stack of one
layer.

- `SSLHead`: a learned weighted sum of the layers, a projection, attentive statistics pooling
  over time and a small classifier.
- `EmoBoxHead`: the downstream model of the EmoBox benchmark, one layer through
  Linear → ReLU → mean over time → Linear, for comparison with its published results.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from ser_lightning.models.layers import AttentiveStatisticsPooling, init_weights
from ser_lightning.models.masking import lengths_mask, masked_mean
from ser_lightning.models.requirements import InputRequirement
from ser_lightning.utils.errors import InvalidSetting


class SSLHead(nn.Module):
    """Learned layer mix → projection → attentive statistics pooling → MLP.

    1. Layer mix: softmax(w) over the C layers, w initialised to zeros so that every layer
       starts with weight 1/C (the SUPERB weighted sum). With `layer_norm=True` each layer's
       frame vectors are first normalised over the hidden axis (no learned scale or shift),
       so that layers of different magnitude mix on equal terms.
    2. `Linear(F, hidden_dim)` per frame.
    3. Attentive statistics pooling over the T frames: one attention score per frame
       (`Linear(hidden_dim, attention_dim) → tanh → Linear(attention_dim, 1)`, softmax over
       time), then the weighted mean and standard deviation, `2 * hidden_dim` values.
       When the features have one frame (pooled over time) there is nothing to attend over
       and no spread to measure: the head builds no attention and passes the projected
       vector on alone (`hidden_dim` values), rather than a constant zero standard deviation.
    4. Dropout → `Linear(·, hidden_dim)` → ReLU → Dropout → `Linear(hidden_dim, num_classes)`.

    Input requirement: any `(C, F, T)` with C ≥ 1, read as C layers of F-dimensional frames.
    On one-channel features (log-mel, MFCC, handcrafted68) the mix is the identity and the
    head is a projection, attentive pooling and MLP over the feature frames, a sensible
    fallback rather than an error.
    """

    input_requirement = InputRequirement()  # any (layers, hidden, frames)
    accepts_lengths = True  # forward(x, lengths): padded batches of variable-length clips

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        hidden_dim: int = 256,
        attention_dim: int = 128,
        layer_norm: bool = False,
        dropout: float = 0.2,
    ):
        super().__init__()
        num_layers, n_features, n_frames = input_shape
        self.layer_norm = layer_norm
        self.layer_logits = nn.Parameter(torch.zeros(num_layers))
        self.project = nn.Linear(n_features, hidden_dim)
        self.pooling = AttentiveStatisticsPooling(hidden_dim, attention_dim) if n_frames > 1 else None
        pooled_dim = 2 * hidden_dim if self.pooling is not None else hidden_dim
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(pooled_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )
        init_weights(self)

    def layer_weights(self) -> torch.Tensor:
        """The weight of each layer in the mix.

        Returns:
            The softmax of the layer logits, `(C,)`, summing to 1.
        """
        return torch.softmax(self.layer_logits, dim=0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return the logits `(batch, num_classes)` of `(batch, layers, hidden, frames)` features.

        With `lengths` (`(batch,)` frame counts of a padded batch), the attentive statistics
        pooling weighs each clip's real frames only (the mix and projection work frame by frame),
        so each clip gets the logits it gets alone.
        """
        x = x.transpose(2, 3)  # (B, C, T, F): one vector per layer and frame
        if self.layer_norm:
            x = functional.layer_norm(x, x.shape[-1:])
        x = torch.einsum("c,bctf->btf", self.layer_weights(), x)
        x = self.project(x)  # (B, T, hidden_dim)
        if self.pooling is None:
            return self.classifier(x[:, 0])
        mask = None if lengths is None else lengths_mask(lengths.to(x.device), x.size(1))
        return self.classifier(self.pooling(x, mask))


class EmoBoxHead(nn.Module):
    """EmoBox's downstream model: one layer → Linear(F, 256) → ReLU → mean over time → Linear.

    Matched to EmoBox's SpeechBrain recipe: a hidden size of 256, no dropout, no normalisation,
    the ReLU applied per frame before the mean over time, PyTorch's default initialisation of
    the two linear layers. EmoBox averages only over the frames of each clip (its batches are
    padded); the clips here all have the same length, so the mean is over all T frames. Its
    features are one encoder layer saved per clip: `layer` picks that layer from the stack
    (null: the last, channel C - 1; negative values count from the end).

    On features pooled over time (T = 1) the mean is over one frame, so the ReLU comes after
    the pooling instead of before it: not EmoBox's order, where the frames are pooled last.

    Input requirement: any `(C, F, T)` whose C holds the chosen layer; one-channel features
    (log-mel and the like) give the one layer there is.
    """

    input_requirement = InputRequirement()  # any (layers, hidden, frames); `layer` checked below
    accepts_lengths = True  # forward(x, lengths): the mean over each clip's own frames

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        hidden_dim: int = 256,
        layer: int | None = None,
    ):
        super().__init__()
        num_layers, n_features, _ = input_shape
        chosen = num_layers - 1 if layer is None else layer
        if not -num_layers <= chosen < num_layers:
            raise InvalidSetting(
                f"EmoBoxHead: model.net.layer={layer} is not a layer of these features, which hold "
                f"{num_layers} (input (layers, hidden, frames) = {tuple(input_shape)}); set "
                f"model.net.layer to one of 0..{num_layers - 1}, or null for the last"
            )
        self.layer = chosen % num_layers
        self.pre_net = nn.Linear(n_features, hidden_dim)
        self.post_net = nn.Linear(hidden_dim, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Return the logits `(batch, num_classes)` from layer `self.layer` of `x`, `(batch, C, F, T)`.

        With `lengths` (`(batch,)` frame counts of a padded batch) the mean is over each clip's
        own frames, as EmoBox averages its padded batches.
        """
        frames = x[:, self.layer].transpose(1, 2)  # (B, T, F)
        hidden = torch.relu(self.pre_net(frames))
        mask = None if lengths is None else lengths_mask(lengths.to(x.device), hidden.size(1))
        return self.post_net(masked_mean(hidden, mask))
