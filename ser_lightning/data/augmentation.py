"""The `augmentation` config group, split by where each part runs.

    waveform:        audiomentations transforms for the train split (null = off)
    offline_copies:  0 = augment waveforms on the fly in the DataLoader workers, features
                     recomputed per batch on the device; K > 0 = K augmented copies of every
                     training clip, features computed once into the cache (CPU-only features)
    offline_seed:    seed of the offline copies (part of their cache key)
    spectrogram:     SpecAugment masks, on the device, train only (null = off)
    mixup:           mixup of training batches, on the device (null = off)

The data-side parts become the data module's constructor arguments (`for_data_module`): the
on-the-fly waveform transforms, or the offline copies built from them. The device-side parts
are `_target_` nodes the LightningModule receives and keeps in its checkpoint
(`for_lightning_module`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf

from ser_lightning.augment.waveform import WaveformAugmentation, build_waveform_augmentation
from ser_lightning.data.offline_copies import OfflineCopies
from ser_lightning.utils.errors import InvalidSetting

AUGMENTATION_DEFAULTS = {
    "waveform": None,
    "offline_copies": 0,
    "offline_seed": 0,
    "spectrogram": None,
    "mixup": None,
}
# What the device-side nodes build; a node written without `_target_` (as older configs did)
# builds the same class.
DEVICE_AUGMENTATION_TARGETS = {
    "spectrogram": "ser_lightning.augment.spectrogram.SpecAugment",
    "mixup": "ser_lightning.augment.mixup.Mixup",
}


def check_augmentation(node: Mapping[str, Any] | None) -> dict:
    """Check the `augmentation` config and fill in its defaults.

    Args:
        node: the `augmentation` config (a mapping or an OmegaConf node), or None for the defaults.

    Returns:
        A plain dict with every key of AUGMENTATION_DEFAULTS; `spectrogram` and `mixup` as
        `_target_` nodes or None.

    Raises:
        InvalidSetting: when the node is not a mapping, has unknown keys (named), an
            `offline_copies` that is not a whole number >= 0 or is set without waveform
            transforms, or a device augmentation node that `device_node` refuses.
    """
    if node is None:
        return dict(AUGMENTATION_DEFAULTS)
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, Mapping):
        raise InvalidSetting(
            f"augmentation must be a mapping with keys {list(AUGMENTATION_DEFAULTS)}; got {node!r}"
        )
    unknown = sorted(set(node) - set(AUGMENTATION_DEFAULTS))
    if unknown:
        raise InvalidSetting(
            f"augmentation has unknown keys {unknown}; allowed: {list(AUGMENTATION_DEFAULTS)} "
            "(see conf/augmentation/full.yaml)"
        )
    augmentation = {**AUGMENTATION_DEFAULTS, **dict(node)}
    copies = augmentation["offline_copies"]
    if not isinstance(copies, int) or isinstance(copies, bool) or copies < 0:
        raise InvalidSetting(f"augmentation.offline_copies={copies!r} must be a whole number >= 0")
    if copies and not augmentation["waveform"]:
        raise InvalidSetting(
            f"augmentation.offline_copies={copies} needs augmentation.waveform transforms to make the copies "
            "with; use a preset that has them (augmentation=waveform) or set offline_copies=0"
        )
    for key, target in DEVICE_AUGMENTATION_TARGETS.items():
        augmentation[key] = device_node(augmentation[key], key, target)
    return augmentation


def device_node(node: Mapping[str, Any] | bool | None, key: str, target: str) -> dict | None:
    """Turn `augmentation.<key>` into a `_target_` node of `target`.

    Args:
        node: the key's options, or a false value when off.
        key: `spectrogram` or `mixup`, for messages.
        target: the class the node must build.

    Returns:
        The options with `_target_` set to `target`, or None when off.

    Raises:
        InvalidSetting: when the node is not a mapping or names another `_target_`.
    """
    if not node:
        return None
    if not isinstance(node, Mapping):
        raise InvalidSetting(f"augmentation.{key} must be a mapping of options or null; got {node!r}")
    given = node.get("_target_", target)
    if given != target:
        raise InvalidSetting(
            f"augmentation.{key}._target_={given!r} is refused: augmentation.{key} builds {target}"
        )
    return {"_target_": target, **{k: v for k, v in node.items() if k != "_target_"}}


def for_data_module(
    node: Mapping[str, Any] | None, sample_rate: int
) -> dict[str, WaveformAugmentation | OfflineCopies | None]:
    """Build the data module's augmentation arguments.

    They are `waveform_augmentation` (on the fly, in the DataLoader workers) or `offline_copies`
    (K copies cached once); both None when off.

    Args:
        node: the `augmentation` config.
        sample_rate: the clips' sample rate.

    Returns:
        `waveform_augmentation` and `offline_copies`, at most one of them not None.

    Raises:
        InvalidSetting: when the config is invalid (`check_augmentation`), or offline copies are
            asked for while every waveform transform is off.
    """
    augmentation = check_augmentation(node)
    waveform = build_waveform_augmentation(augmentation["waveform"], sample_rate)
    if waveform is None:
        if augmentation["offline_copies"]:
            raise InvalidSetting(
                f"augmentation.offline_copies={augmentation['offline_copies']} needs waveform transforms to make "
                "the copies with, but every augmentation.waveform.transforms entry is off (null); turn one on "
                "or set offline_copies=0"
            )
        return {"waveform_augmentation": None, "offline_copies": None}
    if augmentation["offline_copies"]:
        copies = OfflineCopies(
            waveform,
            copies=augmentation["offline_copies"],
            seed=augmentation["offline_seed"],
            description=augmentation["waveform"],
        )
        return {"waveform_augmentation": None, "offline_copies": copies}
    return {"waveform_augmentation": waveform, "offline_copies": None}


def for_lightning_module(node: Mapping[str, Any] | None) -> dict[str, dict | None]:
    """Build the LightningModule's augmentation arguments.

    Args:
        node: the `augmentation` config.

    Returns:
        The `spectrogram` and `mixup` `_target_` nodes (None when off).
    """
    augmentation = check_augmentation(node)
    return {key: augmentation[key] for key in DEVICE_AUGMENTATION_TARGETS}
