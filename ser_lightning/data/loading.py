"""From cached arrays to batches: the datasets over memory-mapped rows and the loader settings."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ser_lightning.features.base import FeatureExtractor
from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.seeding import seeded_global_rngs

log = logging.getLogger(__name__)


def available_cores() -> int:
    """Count the CPU cores this process may run on (respects affinity masks and cpusets).

    Returns:
        The number of cores in the affinity mask, else the machine's count, at least 1.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class CachedUtterances(Dataset):
    """Rows of a memory-mapped cache array, with their labels.

    `kind` names what the rows are ("features" or "waveform"); it is the batch key the
    LightningModule reads. `transform` (waveforms only) runs in the DataLoader workers. Items
    are addressed by position, or by `(position, epoch seed)` from
    `EpochSeededShuffle(item_seeds=True)`: the transform then runs under generators seeded
    from (epoch seed, row), so that augmentation does not depend on workers or on resuming.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray, labels: np.ndarray, kind: str, transform=None):
        self.array = array
        self.rows = rows
        self.labels = labels
        self.kind = kind
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def _transformed(self, item: np.ndarray, row: int, epoch_seed: int | None) -> np.ndarray:
        if epoch_seed is None:
            return self.transform(item)
        with seeded_global_rngs(epoch_seed, row):
            return self.transform(item)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        position, epoch_seed = key if isinstance(key, tuple) else (key, None)
        row = int(self.rows[position])
        item = np.array(self.array[row], dtype=np.float32)  # copy out of the read-only map
        if self.transform is not None:
            item = self._transformed(item, row, epoch_seed)
        return {self.kind: torch.from_numpy(item), "label": int(self.labels[row]), "row": row}

    def __getitems__(self, keys: list[int] | list[tuple[int, int]]) -> dict:
        """Fetch a whole batch, already collated.

        One gathered read of the map replaces a copy per item and a second one to stack them
        (the DataLoader fetches batches through this).

        Args:
            keys: positions, or `(position, epoch seed)` pairs from EpochSeededShuffle.

        Returns:
            `{kind: (B, ...) float32, "label": (B,) int64, "row": (B,) int64}`, transformed when
            the dataset has a transform.
        """
        if keys and isinstance(keys[0], tuple):
            positions, seeds = [k[0] for k in keys], [k[1] for k in keys]
        else:
            positions, seeds = keys, [None] * len(keys)
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        block = np.array(self.array[rows], dtype=np.float32)  # rows in the sampler's order
        if self.transform is not None:
            block = np.stack(
                [
                    self._transformed(item, int(row), seed)
                    for item, row, seed in zip(block, rows, seeds, strict=True)
                ]
            )
        return {
            self.kind: torch.from_numpy(block),
            "label": torch.from_numpy(self.labels[rows].astype(np.int64)),
            "row": torch.from_numpy(rows.astype(np.int64)),
        }


def collate_batch(data: dict | list[dict]) -> dict:
    """Collate a batch for the DataLoader (its collate_fn).

    CachedUtterances hands over collated batches; item lists from other datasets (a
    ConcatDataset with offline copies) are collated as usual.

    Args:
        data: a collated batch, or a list of items.

    Returns:
        The batch.
    """
    return data if isinstance(data, dict) else default_collate(data)


@dataclass(frozen=True)
class LoaderSettings:
    """How batches are made: size, worker processes, pinning, and the seed of the train order.

    `num_workers="auto"`: when training clips are augmented on the fly, one worker per CPU core
    less one (the training process keeps one; more only queue), else none (cached rows are read
    faster in the training process than shipped from a worker).
    """

    batch_size: int = 32
    num_workers: int | str = "auto"
    pin_memory: bool | str = "auto"
    shuffle_seed: int = 0
    # host: DataLoader batches; device: the rows on the training device, batches as slices;
    # auto: device when it is a GPU with room for them (see ser_lightning.data.device_batches)
    placement: str = "host"
    device_memory_share: float = 0.5

    def __post_init__(self):
        if self.placement not in ("host", "device", "auto"):
            raise InvalidSetting(f"data.placement={self.placement!r} must be host, device or auto")
        if not 0.0 < self.device_memory_share <= 1.0:
            raise InvalidSetting(
                f"data.device_memory_share={self.device_memory_share} must be in (0, 1]: the share of the "
                "device's free memory the rows may take with data.placement=auto"
            )
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise InvalidSetting(f"data.batch_size={self.batch_size} must be at least 1")
        if self.num_workers != "auto" and (
            not isinstance(self.num_workers, int)
            or isinstance(self.num_workers, bool)
            or self.num_workers < 0
        ):
            raise InvalidSetting(f"data.num_workers={self.num_workers!r} must be auto or a whole number >= 0")
        if self.pin_memory not in (True, False, "auto"):
            raise InvalidSetting(
                f"data.pin_memory={self.pin_memory!r} must be true, false or auto (pin when training on a CUDA GPU)"
            )

    def workers(self, augmenting_in_workers: bool) -> int:
        """Choose the number of DataLoader worker processes.

        Args:
            augmenting_in_workers: whether training clips are augmented on the fly in the workers.

        Returns:
            `num_workers`, or for "auto" one per CPU core less one when augmenting, else 0.
        """
        if self.num_workers == "auto":
            return max(1, available_cores() - 1) if augmenting_in_workers else 0
        if augmenting_in_workers and self.num_workers == 0:
            log.warning(
                "augmentation.waveform runs in the main process (data.num_workers=0): data loading may be "
                "the bottleneck; set data.num_workers=auto (one worker per spare CPU core)"
            )
        return int(self.num_workers)

    def pin(self, device: torch.device | None) -> bool:
        """Decide whether the DataLoader pins its batches.

        Pinned batches copy to a CUDA device asynchronously; without one they are only an extra
        copy (and torch warns on every loader). `auto` pins when the trainer runs on CUDA.

        Args:
            device: the trainer's root device, or None when unknown.

        Returns:
            Whether to pin (never without CUDA).
        """
        if not torch.cuda.is_available() or self.pin_memory is False:
            return False
        if self.pin_memory == "auto":
            return device is not None and device.type == "cuda"
        return True


TRAIN_INPUTS = ("features", "waveform")


def check_train_input(
    train_input: str,
    features: FeatureExtractor,
    waveform_augmentation: object | None,
    offline_copies: object | None,
) -> None:
    """Refuse a train input that the features or the augmentation settings cannot work with.

    Args:
        train_input: What train batches carry: "features" (cached) or "waveform" (features
            computed per batch on the device).
        features: The feature extractor.
        waveform_augmentation: On-the-fly waveform augmentation, if any.
        offline_copies: Offline augmented copies, if any.

    Raises:
        InvalidSetting: If the combination cannot work; the message says which setting to change.
    """
    if train_input not in TRAIN_INPUTS:
        raise InvalidSetting(f"data.train_input={train_input!r} must be 'features' or 'waveform'")
    if train_input == "waveform" and not features.runs_on_device:
        raise InvalidSetting(
            f"data.train_input=waveform needs features computed per batch, but {type(features).__name__} "
            "is precomputed on CPU; use data.train_input=features"
        )
    if waveform_augmentation is not None and train_input != "waveform":
        raise InvalidSetting(
            "on-the-fly waveform augmentation needs data.train_input=waveform (features recomputed "
            "from the augmented audio); cached features cannot see it"
        )
    if offline_copies is not None and train_input == "waveform":
        raise InvalidSetting(
            "augmentation.offline_copies adds cached feature rows, but data.train_input=waveform trains "
            "on raw audio; set data.train_input=features, or offline_copies=0 to augment on the fly"
        )
