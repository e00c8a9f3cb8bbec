"""The train order of each epoch, as a function of (seed, epoch) only: what exact resumption needs.

Lightning does not store random generator states in checkpoints, and a resumed run draws
its first epoch's order at a different moment (when fit starts, before any epoch hook) than
an uninterrupted run (at that epoch's start). `EpochSeededShuffle` makes both the same: when
an epoch's iteration begins it derives a seed from (seed, epoch), shuffles with it, and
reseeds torch, numpy and Python's generators with it. Everything random after that point
(dropout, main-process augmentation) then replays exactly in a resumed run.

Not covered: randomness inside persistent DataLoader worker processes (data.num_workers > 0),
whose generators live on across epochs in an uninterrupted run but start afresh on resume.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch; distinct (seed, epoch) pairs give unrelated streams."""
    return int(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(2, np.uint64)[0] >> 1
    )


def seed_generators(seed: int) -> None:
    """Seed torch (all devices), numpy and Python's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


class EpochSeededShuffle(Sampler[int]):
    """A random permutation of `size` rows per epoch, drawn from (seed, epoch).

    `epoch` says which epoch an iteration belongs to (the data module asks its trainer); without
    it, each iteration counts as the next epoch.
    """

    def __init__(self, size: int, seed: int, epoch: Callable[[], int | None] | None = None):
        self.size = size
        self.seed = seed
        self.epoch = epoch
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
        return iter(torch.randperm(self.size, generator=generator).tolist())
