"""The `augmentation` config node: what it may hold and how it reaches the data module.

    waveform:        audiomentations transforms for the train split (null = off)
    offline_copies:  0 = augment waveforms on the fly in the DataLoader workers, features
                     recomputed per batch on the device; K > 0 = K augmented copies of every
                     training clip, features computed once into the cache (CPU-only features)
    offline_seed:    seed of the offline copies (part of their cache key)
    spectrogram:     SpecAugment masks, on the device, train only (null = off)
    mixup:           mixup of training batches, on the device (null = off)

The data-side parts (waveform, offline copies) are attached to the data module here; the
device-side parts (spectrogram, mixup) are built by the LightningModule from the same plain
dict (`ser_lightning.augment.batch`), which its checkpoint keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from omegaconf import OmegaConf

from ser_lightning.augment.offline import OfflineCopies, available_cores
from ser_lightning.augment.waveform import build_waveform_augmentation

log = logging.getLogger(__name__)

AUGMENTATION_DEFAULTS = {
    "waveform": None,
    "offline_copies": 0,
    "offline_seed": 0,
    "spectrogram": None,
    "mixup": None,
}


def check_augmentation(node) -> dict:
    """A plain dict with every key of AUGMENTATION_DEFAULTS; unknown keys are refused by name."""
    if node is None:
        return dict(AUGMENTATION_DEFAULTS)
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, Mapping):
        raise ValueError(
            f"augmentation must be a mapping with keys {list(AUGMENTATION_DEFAULTS)}; got {node!r}"
        )
    unknown = sorted(set(node) - set(AUGMENTATION_DEFAULTS))
    if unknown:
        raise ValueError(
            f"augmentation has unknown keys {unknown}; allowed: {list(AUGMENTATION_DEFAULTS)} "
            "(see conf/augmentation/full.yaml)"
        )
    augmentation = {**AUGMENTATION_DEFAULTS, **dict(node)}
    copies = augmentation["offline_copies"]
    if not isinstance(copies, int) or isinstance(copies, bool) or copies < 0:
        raise ValueError(f"augmentation.offline_copies={copies!r} must be a whole number >= 0")
    if copies and not augmentation["waveform"]:
        raise ValueError(
            f"augmentation.offline_copies={copies} needs augmentation.waveform transforms to make the copies "
            "with; use a preset that has them (augmentation=waveform) or set offline_copies=0"
        )
    return augmentation


def configure_datamodule(node, datamodule) -> dict:
    """Attach the data-side augmentation to a SERDataModule, train split only; returns the plain dict.

    On-the-fly waveform augmentation switches the train split to raw waveforms
    (`train_input=waveform`) so features are recomputed from the augmented audio on the
    device; validation and test keep reading the clean cached features.
    """
    augmentation = check_augmentation(node)
    waveform = build_waveform_augmentation(augmentation["waveform"], datamodule.audio.sample_rate)
    if waveform is None:
        return augmentation
    features = datamodule.features
    if augmentation["offline_copies"]:
        if datamodule.train_input == "waveform":
            raise ValueError(
                "augmentation.offline_copies adds cached feature rows, but data.train_input=waveform trains "
                "on raw audio; set data.train_input=features, or offline_copies=0 to augment on the fly"
            )
        datamodule.offline_augmentation = OfflineCopies(
            waveform,
            copies=augmentation["offline_copies"],
            seed=augmentation["offline_seed"],
            description=augmentation["waveform"],
        )
        log.info(
            "augmentation: %d offline copies per training clip with %s",
            augmentation["offline_copies"],
            waveform.names,
        )
        return augmentation
    if not features.runs_on_device:
        raise ValueError(
            f"augmentation.waveform on the fly needs features computed per batch, but {type(features).__name__} "
            "is computed once on CPU and cached; set augmentation.offline_copies=K (e.g. 2) to cache K "
            "augmented copies of every training clip instead"
        )
    datamodule.train_input = "waveform"
    datamodule.waveform_transform = waveform
    # One core stays with the training process; more workers than cores only queue (torch warns
    # that they can stall). Presets ask for 16, enough for a GPU host, and are capped here.
    spare = max(1, available_cores() - 1)
    if datamodule.num_workers > spare:
        log.info(
            "data.num_workers=%d capped to %d (CPU cores available, less one)",
            datamodule.num_workers,
            spare,
        )
        datamodule.num_workers = spare
    if datamodule.num_workers == 0:
        log.warning(
            "augmentation.waveform runs in the main process (data.num_workers=0): data loading may be "
            "the bottleneck; set data.num_workers to the number of spare CPU cores"
        )
    log.info(
        "augmentation: waveform transforms %s on the train split, in the DataLoader workers",
        waveform.names,
    )
    return augmentation
