"""What input a network can take, declared next to each network and checked at start-up.

Every network sizes itself from the feature shape `(channels, n_features, n_frames)`, so most
pairs of model and features work. Where a network cannot (a two-channel design on one-channel
features), it declares `input_requirement` and the LightningModule checks it before building
the network: the run stops at once with a message naming the model, the features and what
would fit, instead of a shape error from deep inside a forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hydra.utils import get_class, instantiate
from torch import nn

from ser_lightning.utils.errors import UserError


class IncompatibleFeaturesError(UserError, ValueError):
    """A model × features pair that cannot work; the message says what would fit."""


@dataclass(frozen=True)
class InputRequirement:
    """The input a network needs, declared as its `input_requirement` class attribute.

    Attributes:
        channels: The exact number of input channels the network needs (None: any).
        fits: The feature settings that give such input, quoted in the error message.
        feature_classes: The names of the feature classes it takes, when it takes no other
            (empty: any).
    """

    channels: int | None = None
    fits: str = ""
    # the feature classes (their names) it takes, when it takes no other; () any
    feature_classes: tuple[str, ...] = ()

    def check(self, model: str, input_shape: tuple[int, int, int], features: str, feature_class: str) -> None:
        """Check features of shape `input_shape` against this requirement.

        Args:
            model: How to name the model in a message.
            input_shape: The features' `(channels, n_features, n_frames)`.
            features: How to name the features in a message.
            feature_class: The features' class name, matched against `feature_classes`.

        Raises:
            IncompatibleFeaturesError: If the feature class is not one of `feature_classes`, or
                the channel count is not `channels`.
        """
        if self.feature_classes and feature_class not in self.feature_classes:
            raise IncompatibleFeaturesError(
                f"model {model} cannot take features {features}: it takes {' or '.join(self.feature_classes)} "
                f"features only. Features that fit: {self.fits}."
            )
        channels = input_shape[0]
        if self.channels is not None and channels != self.channels:
            raise IncompatibleFeaturesError(
                f"model {model} cannot take features {features}: it needs {self.channels} input channels, "
                f"but these features give input (channels, n_features, n_frames) = {tuple(input_shape)}. "
                f"Features that fit: {self.fits or f'any with {self.channels} channels'}."
            )


def _short(target: str) -> str:
    return target.rsplit(".", 1)[-1]


def check_compatible(net: Mapping, features: Mapping, input_shape: tuple[int, int, int]) -> None:
    """Raise IncompatibleFeaturesError when the network's declared requirement rejects the input.

    Args:
        net: The network's config (its `_target_` names the class).
        features: The features' config (its `_target_` names the class).
        input_shape: The features' `(channels, n_features, n_frames)`.

    Raises:
        IncompatibleFeaturesError: If the features are raw waveforms and the network does not
            declare that it takes them, or the network's `input_requirement` rejects them.
    """
    target = net["_target_"]
    requirement: InputRequirement | None = getattr(get_class(target), "input_requirement", None)
    feature_class = _short(features["_target_"])
    features_name = f"{feature_class} (features._target_={features['_target_']})"
    model_name = f"{_short(target)} (model.net._target_={target})"
    # features that only networks with their own front end take (the waveform itself)
    if getattr(get_class(features["_target_"]), "needs_own_front_end", False) and (
        requirement is None or feature_class not in requirement.feature_classes
    ):
        raise IncompatibleFeaturesError(
            f"model {model_name} cannot take features {features_name}: these are raw waveforms, for networks "
            "with their own front end (model=ssl_finetune). Features that fit: features=logmel, mfcc, "
            "mfcc_mel, handcrafted68 or ssl."
        )
    if requirement is not None:
        requirement.check(model_name, tuple(input_shape), features_name, feature_class)


def build_network(
    net: dict, input_shape: tuple[int, int, int], num_classes: int, features: dict
) -> nn.Module:
    """Check the network's declared input requirement against the features, then build it.

    Args:
        net: The network's config, instantiated with `input_shape` and `num_classes` added.
        input_shape: The features' `(channels, n_features, n_frames)`.
        num_classes: How many labels the network scores.
        features: The features' config, checked against the network's requirement.

    Returns:
        The built network.
    """
    check_compatible(net, features, input_shape)
    return instantiate(net, input_shape=input_shape, num_classes=num_classes)


# The networks that take padded batches of variable-length clips (`forward(x, lengths)`).
VARIABLE_LENGTH_MODELS = (
    "model=crnn_attn, crnn_attn_mfcc, cnn_bilstm_mha, acnt, ssl_head, ssl_head_emobox or ssl_finetune"
)


def check_accepts_lengths(net: Mapping) -> None:
    """Refuse variable-length clips for a network that needs a fixed number of frames.

    A network takes them when its class declares `accepts_lengths = True`: its forward then
    takes each clip's frame count and gives every clip of a padded batch the output it gets alone.

    Args:
        net: The network's config (its `_target_` names the class).

    Raises:
        IncompatibleFeaturesError: If the network does not declare `accepts_lengths`; the message
            names the model and the two ways out.
    """
    target = net["_target_"]
    if not getattr(get_class(target), "accepts_lengths", False):
        raise IncompatibleFeaturesError(
            f"model {_short(target)} (model.net._target_={target}) takes fixed-length clips only, but "
            "data.duration=null serves clips of their own length; set data.duration to a clip length "
            f"in seconds (e.g. data.duration=3.0), or pick a model that takes variable-length clips: "
            f"{VARIABLE_LENGTH_MODELS}"
        )
