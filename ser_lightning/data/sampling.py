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

A run stopped inside an epoch (a requeue signal on SLURM, `ser_lightning/preemption.py`)
resumes at the batch it stopped before: the sampler draws that epoch's order as before and
leaves out the positions already trained (`resume_within`), and the preemption callback puts
the generators back as they were at that batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DistributedSampler

from ser_lightning.utils.seeding import epoch_seed, seed_generators


def shard_positions(order: list, num_replicas: int, rank: int) -> list:
    """One DDP rank's share of an epoch's order, as `DistributedSampler(shuffle=False)` deals it.

    The order is padded with its own first positions to a multiple of the ranks, and each rank
    takes every `num_replicas`-th position from its own: every rank gets as many.

    Args:
        order: The epoch's positions (or `(position, seed)` pairs), the same on every rank.
        num_replicas: The number of ranks.
        rank: This rank.

    Returns:
        The positions this rank trains on, in order.
    """
    if num_replicas == 1:
        return list(order)
    total = -(-len(order) // num_replicas) * num_replicas
    padded = list(order)
    while len(padded) < total:
        padded += padded[: total - len(padded)]
    return padded[rank:total:num_replicas]


class EpochSeededShuffle(DistributedSampler):
    """A random permutation of `size` rows per epoch, drawn from (seed, epoch), dealt to DDP ranks.

    `epoch` says which epoch an iteration belongs to (the data module asks its trainer); without
    it, each iteration counts as the next epoch. With `item_seeds`, each position comes with the
    epoch's seed, `(position, epoch seed)`, for datasets that draw random numbers per item.

    Under DDP each rank yields its own share (`shard_positions`). It is a DistributedSampler so
    that Lightning takes it as it is instead of wrapping it: the share is the one Lightning's
    wrapper would deal, and being dealt here is what lets a run stopped inside an epoch skip the
    positions it trained already (`resume_within`).

    Args:
        size: The number of rows of the split.
        seed: The run's shuffle seed.
        epoch: Returns the epoch an iteration belongs to (None: count iterations).
        item_seeds: Yield `(position, epoch seed)` pairs instead of positions.
        num_replicas: The number of DDP ranks.
        rank: This process's rank.
    """

    def __init__(
        self,
        size: int,
        seed: int,
        epoch: Callable[[], int | None] | None = None,
        item_seeds: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        # Not DistributedSampler.__init__: it asks torch.distributed for the world, given here.
        self.size = size
        self.seed = seed
        self.epoch = epoch
        self.item_seeds = item_seeds
        self.num_replicas, self.rank = num_replicas, rank
        self._iterations = 0
        self._resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        return -(-self.size // self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Ignored: the epoch comes from `epoch` (Lightning calls this on every DistributedSampler)."""

    def resume_within(self, epoch: int, positions_done: int) -> None:
        """Start the iteration of `epoch` after this rank's first `positions_done` positions.

        For a run resumed inside an epoch: the order is drawn (and the generators seeded) as in
        the uninterrupted run, and the positions already trained are left out, once.

        Args:
            epoch: The epoch the run stopped in.
            positions_done: How many of this rank's positions of that epoch it trained on.
        """
        self._resume = (epoch, positions_done)

    def _draw(self, generator: torch.Generator) -> list[int]:
        """Draw one epoch's order of all positions (subclasses group it, e.g. by length).

        Args:
            generator: The epoch's generator, seeded from (seed, epoch).

        Returns:
            A permutation of `range(size)`.
        """
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator:
        epoch = self.epoch() if self.epoch is not None else None
        if epoch is None:
            epoch = self._iterations
        self._iterations += 1
        seed = epoch_seed(self.seed, epoch)
        seed_generators(seed)
        order = self._draw(torch.Generator().manual_seed(seed))
        if self.item_seeds:
            order = [(position, seed) for position in order]
        positions = shard_positions(order, self.num_replicas, self.rank)
        if self._resume is not None and self._resume[0] == epoch:
            positions = positions[self._resume[1] :]
            self._resume = None
        return iter(positions)
