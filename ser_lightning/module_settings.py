"""Settings of the LightningModule that build parts of it: torch.compile's mode and the batch augmentation.

`SERModule` reads `model.compile` with `compile_mode` and builds the SpecAugment and mixup of
its training batches from the `augmentation.spectrogram` and `augmentation.mixup` nodes with
`batch_augmentation`; each refuses a setting it cannot use with a message naming the key.
"""

from __future__ import annotations

from hydra.errors import InstantiationException
from hydra.utils import instantiate

from ser_lightning.augment.batch import BatchAugmentation
from ser_lightning.utils.errors import InvalidSetting

# `model.compile`: false, or true (torch.compile's default mode), or one of its modes by name.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(setting) -> str | None:
    """The torch.compile mode `model.compile` asks for.

    Returns:
        "default" for true, the mode itself for a mode name, None for false or None (off).

    Raises:
        InvalidSetting: If the setting is none of these.
    """
    if setting is False or setting is None:
        return None
    if setting is True:
        return "default"
    if setting in COMPILE_MODES:
        return setting
    raise InvalidSetting(
        f"model.compile={setting!r} must be false, true or one of the modes {list(COMPILE_MODES)}"
    )


def batch_augmentation(
    spectrogram: dict | None, mixup: dict | None, input_shape: tuple[int, int, int]
) -> BatchAugmentation:
    """Build the BatchAugmentation of the `augmentation.spectrogram` and `augmentation.mixup` nodes.

    Args:
        spectrogram: The `_target_` node of SpecAugment, None when off.
        mixup: The `_target_` node of Mixup, None when off.
        input_shape: The features' `(C, F, T)`, which SpecAugment checks it can mask.

    Returns:
        The batch augmentation of training steps (the identity when both are off).

    Raises:
        InvalidSetting: If a node cannot be instantiated (raised by `_build`).
    """
    return BatchAugmentation(
        _build(spectrogram, "spectrogram", "specaugment", input_shape), _build(mixup, "mixup", "mixup", None)
    )


def _build(node: dict | None, key: str, preset: str, input_shape: tuple[int, int, int] | None):
    if not node:
        return None
    try:
        transform = instantiate(node)
    except InstantiationException as err:
        cause = err.__cause__ if err.__cause__ is not None else err
        raise InvalidSetting(f"augmentation.{key}: {cause}; see conf/augmentation/{preset}.yaml") from err
    if input_shape is not None:
        transform.check_input_shape(input_shape)
    return transform
