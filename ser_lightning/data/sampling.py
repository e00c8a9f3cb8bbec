"""The train order of each epoch, as a function of (seed, epoch) only: what exact resumption needs.

Lightning does not store random generator states in checkpoints, and a resumed run draws
its first epoch's order at a different moment (when fit starts, before any epoch hook) than
an uninterrupted run (at that epoch's start). `EpochSeededShuffle` makes both the same: when
an epoch's iteration begins it derives a seed from (seed, epoch), shuffles with it, and
reseeds torch, numpy and Python's generators with it. Everything random after that point
(dropout, main-process augmentation) then replays exactly in a resumed run.

Randomness inside DataLoader worker processes (waveform augmentation) is covered by seeding
per clip instead: with `item_seeds=True` the sampler yields `(position, epoch seed)` pairs and
the dataset augments each clip under generators seeded from (epoch seed, row), so a clip's
augmentation in an epoch depends on neither the worker that makes it, nor the number of
workers, nor whether the run was resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import Sampler

from ser_lightning.utils.seeding import epoch_seed, seed_generators


class EpochSeededShuffle(Sampler):
    """A random permutation of `size` rows per epoch, drawn from (seed, epoch).

    `epoch` says which epoch an iteration belongs to (the data module asks its trainer); without
    it, each iteration counts as the next epoch. With `item_seeds`, each position comes with the
    epoch's seed, `(position, epoch seed)`, for datasets that draw random numbers per item.
    """

    def __init__(
        self, size: int, seed: int, epoch: Callable[[], int | None] | None = None, item_seeds: bool = False
    ):
        self.size = size
        self.seed = seed
        self.epoch = epoch
        self.item_seeds = item_seeds
        self._iterations = 0

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch() if self.epoch is not None else None
        if epoch is None:
            epoch = self._iterations
        self._iterations += 1
        seed = epoch_seed(self.seed, epoch)
        seed_generators(seed)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.item_seeds:
            return iter([(position, seed) for position in order])
        return iter(order)
