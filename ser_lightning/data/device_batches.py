"""`data.placement=device`: a split's cached rows held on the training device, batches as slices.

The cached features of a corpus of RAVDESS's size are tens of MB (the 1440 demo clips' log-mel
features: 35 MB), a small part of any GPU. Moved there once, every batch is an index into them:
no DataLoader, no worker processes, no host-to-device copy per step, which is what bounds the
step rate of small networks on a GPU.

The batches are those of the host path (`SERDataModule`'s DataLoader) for the same seed, in the
same order: the train order of each epoch comes from the same `EpochSeededShuffle` (drawn on the
host from (seed, epoch), which also reseeds the generators at the epoch's start, so a resumed run
replays it; one copy of the N positions to the device per epoch), and under DDP each rank takes
the shard Lightning's `DistributedSamplerWrapper` gives it on the host path
(`DistributedSampler(shuffle=False)` over that order: padded to a multiple of the ranks, every
world-size-th position from the rank's own).

`placement=auto` puts the rows on the device when it is a CUDA device and the train, val and
test rows fit in `device_memory_share` of its free memory, else keeps the host path. Batches
whose clips change every epoch stay on the host path: on-the-fly waveform augmentation (in the
DataLoader workers) and offline augmented copies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ser_lightning.data.sampling import EpochSeededShuffle, shard_positions
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

PLACEMENTS = ("host", "device", "auto")


class DeviceBatches:
    """Batches `{kind, "label", "row"}` of rows held on one device, as Lightning takes a loader.

    values: `(N, ...)` float32 rows of one split, in the split's order, on the device.
    labels, rows: `(N,)` int64 on the same device (rows: the table row of each).
    order: the train order of each epoch, already this rank's share (None: the split's order, for val and test).
    num_replicas, rank: the DDP world and this process's place in it.
    """

    def __init__(
        self,
        values: torch.Tensor,
        labels: torch.Tensor,
        rows: torch.Tensor,
        batch_size: int,
        kind: str = "features",
        order: EpochSeededShuffle | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if not len(values) == len(labels) == len(rows):
            raise InvalidSetting(f"{len(values)} rows, {len(labels)} labels and {len(rows)} row numbers")
        self.values, self.labels, self.rows = values, labels, rows
        self.batch_size = batch_size
        self.kind = kind
        self.order = order
        self.num_replicas, self.rank = num_replicas, rank

    @property
    def device(self) -> torch.device:
        """The device the rows are held on."""
        return self.values.device

    def __len__(self) -> int:
        shard_size = -(-len(self.values) // self.num_replicas)
        return -(-shard_size // self.batch_size)

    def positions(self) -> list[int]:
        """Draw this epoch's positions for this rank (drawing the train order starts the epoch).

        Returns:
            The positions of the rows this rank serves, in order: the train order's share for
            this rank (the sampler deals it), or this rank's share of the split's order.
        """
        if self.order is not None:
            return list(self.order)
        return shard_positions(list(range(len(self.values))), self.num_replicas, self.rank)

    def __iter__(self) -> Iterator[dict]:
        """Serve this epoch's batches as slices of the rows on the device.

        Yields:
            Batches `{kind: values, "label": labels, "row": table rows}` of up to `batch_size` rows.
        """
        index = torch.as_tensor(self.positions(), dtype=torch.int64).to(self.device, non_blocking=True)
        for start in range(0, len(index), self.batch_size):
            batch = index[start : start + self.batch_size]
            yield {self.kind: self.values[batch], "label": self.labels[batch], "row": self.rows[batch]}


def rows_to_device(
    array: np.ndarray, rows: np.ndarray, labels: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Copy one split's cached rows to `device`.

    Args:
        array: the cache array (memory-mapped).
        rows: the split's table rows.
        labels: the label of every table row.
        device: where to hold them.

    Returns:
        The rows (float32, as batches are), their labels and row numbers (int64), on `device`.
    """
    values = torch.from_numpy(np.array(array[rows], dtype=np.float32)).to(device)
    return (
        values,
        torch.from_numpy(labels[rows].astype(np.int64)).to(device),
        torch.from_numpy(rows.astype(np.int64)).to(device),
    )


def fits_on_device(num_bytes: int, device: torch.device, share: float) -> tuple[bool, str]:
    """Tell whether `num_bytes` fit in `share` of the device's free memory.

    Args:
        num_bytes: the size of the rows to hold.
        device: the training device (only a GPU holds rows).
        share: the share of its free memory the rows may take.

    Returns:
        Whether they fit, and why, in words for the log.
    """
    if device.type != "cuda":
        return False, f"the training device is {device.type}, not a GPU"
    free, _ = torch.cuda.mem_get_info(device)
    fits = num_bytes <= share * free
    need = f"{num_bytes / 2**20:,.0f} MiB of rows"
    have = f"{share:.0%} of the device's {free / 2**20:,.0f} MiB free"
    return fits, f"{need} {'fit in' if fits else 'do not fit in'} {have}"


class DevicePlacement:
    """Where each split's batches are held (`data.placement`), and the rows moved there once.

    Args:
        placement: "host" (DataLoader batches), "device" (rows held on the training device) or
            "auto" (on a CUDA device when all rows fit `memory_share` of its free memory).
        memory_share: The share of the device's free memory that `auto` may fill.
    """

    def __init__(self, placement: str, memory_share: float):
        self.placement = placement
        self.memory_share = memory_share
        self._rows: dict[str, tuple[torch.Tensor, ...]] = {}
        self._auto_fits: bool | None = None  # placement=auto, decided once
        self._logged: set[str] = set()

    def device_for(
        self, split: str, fixed: bool, device: torch.device | None, bytes_of_all_rows: Callable[[], int]
    ) -> torch.device | None:
        """Decide where a split's batches are held.

        Args:
            split: "train", "val" or "test".
            fixed: Whether the split's rows are the same every epoch (cached features, not
                augmented anew in the workers nor offline copies): only those can be held.
            device: The training device (None: the CPU).
            bytes_of_all_rows: Returns the size of all splits' rows, for `auto` (asked once).

        Returns:
            The device, or None for the host path.
        """
        if self.placement == "host":
            return None
        device = device or torch.device("cpu")
        if not fixed:
            if split not in self._logged:
                self._logged.add(split)
                log.info(
                    "data.placement=%s: the %s split stays on the host path (its clips are augmented anew each "
                    "epoch: waveform augmentation in the DataLoader workers, or offline copies)",
                    self.placement,
                    split,
                )
            return None
        if self.placement == "auto":
            if self._auto_fits is None:
                self._auto_fits, why = fits_on_device(bytes_of_all_rows(), device, self.memory_share)
                log.info(
                    "data.placement=auto: %s, so batches are %s",
                    why,
                    f"slices of rows held on {device}" if self._auto_fits else "made on the host",
                )
            if not self._auto_fits:
                return None
        return device

    def rows_on(
        self,
        split: str,
        device: torch.device,
        rows_of: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Move a split's rows, labels and row numbers to `device`, once.

        Args:
            split: The split.
            device: Where its batches are held.
            rows_of: Returns the split's cached rows, the table's labels and the split's row
                numbers (asked only when they are not on `device` yet).

        Returns:
            The tensors held on `device` (`rows_to_device`).
        """
        held = self._rows.get(split)
        if held is None or held[0].device != device:
            array, labels, rows = rows_of()
            held = rows_to_device(array, rows, labels, device)
            self._rows[split] = held
        return held
