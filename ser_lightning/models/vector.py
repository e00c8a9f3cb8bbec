"""Networks over one feature vector per clip: `model=linear` and `model=mlp`.

They are meant for utterance-level features such as openSMILE functionals (`features=egemaps`
or `compare`, `level: functionals`), whose input is `(1, n_features, 1)`: the network reads the
vector as it is. Features with frames (`(C, F, T)`, T > 1: log-mel, LLDs) are pooled first,
each row's mean and standard deviation over time (`2 * C * F` values), so that every feature
kind gives a vector and these heads still train on it.

As networks under SERModule, they train, evaluate, predict, serve and export like any other.
"""

from __future__ import annotations

import torch
from torch import nn

from ser_lightning.models.layers import init_weights
from ser_lightning.models.requirements import InputRequirement
from ser_lightning.utils.errors import InvalidSetting


def vector_size(input_shape: tuple[int, int, int]) -> int:
    """The length of the vector `to_vector` makes of features of shape `input_shape`.

    Args:
        input_shape: `(channels, n_features, n_frames)`.

    Returns:
        `C * F` for one frame, `2 * C * F` (mean and standard deviation) for more.
    """
    channels, n_features, n_frames = input_shape
    return channels * n_features * (1 if n_frames == 1 else 2)


def to_vector(features: torch.Tensor) -> torch.Tensor:
    """Flatten `(batch, C, F, 1)` features, or pool `(batch, C, F, T)` over time into mean and std.

    Returns:
        `(batch, vector_size)`.
    """
    if features.size(-1) == 1:
        return features.flatten(1)
    mean = features.mean(dim=-1)
    std = features.std(dim=-1)
    return torch.cat([mean, std], dim=-1).flatten(1)


class LinearHead(nn.Module):
    """Dropout → `Linear(vector, classes)`: multinomial logistic regression as a network.

    Args:
        input_shape: `(C, F, T)` of one clip's features.
        num_classes: How many labels it scores.
        dropout: Dropout on the input vector.
    """

    input_requirement = InputRequirement()  # any (C, F, T): frames are pooled to a vector

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, dropout: float = 0.0):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise InvalidSetting(f"model.net.dropout={dropout} must be in [0, 1)")
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(vector_size(input_shape), num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits `(batch, classes)` of features `(batch, C, F, T)`."""
        return self.classifier(self.dropout(to_vector(x)))


class MLPHead(nn.Module):
    """A multi-layer perceptron: per hidden layer `Linear → ReLU → Dropout`, then `Linear(·, classes)`.

    Args:
        input_shape: `(C, F, T)` of one clip's features.
        num_classes: How many labels it scores.
        hidden_dims: The width of each hidden layer, in order (at least one).
        dropout: Dropout after each hidden layer.
    """

    input_requirement = InputRequirement()  # any (C, F, T): frames are pooled to a vector

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        hidden_dims: tuple[int, ...] | list[int] = (256, 128),
        dropout: float = 0.3,
    ):
        super().__init__()
        hidden_dims = list(hidden_dims)
        if not hidden_dims or any(int(width) < 1 for width in hidden_dims):
            raise InvalidSetting(
                f"model.net.hidden_dims={hidden_dims} must list at least one positive layer width "
                "(e.g. [256, 128]); for no hidden layer use model=linear"
            )
        if not 0.0 <= dropout < 1.0:
            raise InvalidSetting(f"model.net.dropout={dropout} must be in [0, 1)")
        layers: list[nn.Module] = []
        width = vector_size(input_shape)
        for hidden in hidden_dims:
            layers += [nn.Linear(width, int(hidden)), nn.ReLU(), nn.Dropout(dropout)]
            width = int(hidden)
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits `(batch, classes)` of features `(batch, C, F, T)`."""
        return self.layers(to_vector(x))
