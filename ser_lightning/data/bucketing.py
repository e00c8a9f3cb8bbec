"""Batches of similar length: a train order that groups clips by length, drawn from (seed, epoch).

Padding a batch of variable-length clips to its longest item wastes the compute spent on the
padding; shuffling the whole split uniformly puts a 1 s clip beside a 30 s one. Bucketing keeps
the randomness and removes most of that waste: the epoch's permutation (the one
`EpochSeededShuffle` draws from (seed, epoch)) is cut into chunks of `chunk_batches` batches,
each chunk is sorted by length and cut into batches, and the batches are shuffled with the same
epoch generator. The order is therefore a function of (seed, epoch) only, a resumed run replays
it, and `resume_within` skips the batches a stopped run trained, as for the plain shuffle.

Under DDP one batch of the order holds `batch_size × num_replicas` positions, dealt to the
ranks as `shard_positions` deals them: every rank's batch of a step comes from the same group of
similar lengths. Only the split's last, smaller batch stays at the end of the order, so that
every full batch is dealt whole.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ser_lightning.data.sampling import EpochSeededShuffle
from ser_lightning.utils.errors import InvalidSetting


def padding_share(lengths: np.ndarray, order: list[int], batch_size: int) -> float:
    """Measure the share of a padded epoch that is padding.

    Args:
        lengths: Every position's length (samples or frames).
        order: The positions in the order they are batched (or `(position, seed)` pairs).
        batch_size: The positions per batch (consecutive in `order`).

    Returns:
        Padded elements over all elements of the padded batches (0 when nothing is padded).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    order = [k[0] if isinstance(k, tuple) else k for k in order]
    padded = used = 0
    for start in range(0, len(order), batch_size):
        batch = lengths[np.asarray(order[start : start + batch_size], dtype=np.int64)]
        padded += int(batch.max()) * len(batch)
        used += int(batch.sum())
    return 0.0 if padded == 0 else (padded - used) / padded


class LengthBucketedShuffle(EpochSeededShuffle):
    """An epoch order that batches clips of similar length, drawn from (seed, epoch) only.

    Everything `EpochSeededShuffle` does (item seeds, DDP shares, `resume_within`, seeding the
    global generators at the epoch's start) holds; only the order differs: see the module.

    Args:
        lengths: The length of every position of the split (samples or frames).
        batch_size: The batch size of one rank.
        seed: The run's shuffle seed.
        epoch: Returns the epoch an iteration belongs to (None: count iterations).
        item_seeds: Yield `(position, epoch seed)` pairs instead of positions.
        num_replicas: The number of DDP ranks.
        rank: This process's rank.
        chunk_batches: How many batches one sorted chunk holds: larger pads less and mixes less.

    Raises:
        InvalidSetting: when `batch_size` or `chunk_batches` is below 1, or a length is negative.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        seed: int,
        epoch: Callable[[], int | None] | None = None,
        item_seeds: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
        chunk_batches: int = 50,
    ):
        lengths = np.asarray(lengths, dtype=np.int64)
        if batch_size < 1:
            raise InvalidSetting(f"data.batch_size={batch_size} must be at least 1")
        if chunk_batches < 1:
            raise InvalidSetting(
                f"data.bucket_chunk_batches={chunk_batches} must be at least 1 (batches per length-sorted chunk)"
            )
        if lengths.ndim != 1 or (lengths < 0).any():
            raise InvalidSetting("clip lengths must be one non-negative count per clip")
        super().__init__(len(lengths), seed, epoch, item_seeds, num_replicas, rank)
        self.lengths = lengths
        self.batch_size = batch_size
        self.chunk_batches = chunk_batches

    def _draw(self, generator: torch.Generator) -> list[int]:
        """Draw the epoch's permutation, sort it by length chunk by chunk and shuffle the batches.

        Args:
            generator: The epoch's generator, seeded from (seed, epoch).

        Returns:
            A permutation of `range(size)` whose consecutive groups of `batch_size × num_replicas`
            positions have similar lengths.
        """
        permutation = torch.randperm(self.size, generator=generator).numpy()
        group = self.batch_size * self.num_replicas
        chunk = group * self.chunk_batches
        batches = []
        for start in range(0, self.size, chunk):
            part = permutation[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches += [part[i : i + group] for i in range(0, len(part), group)]
        last = [batches.pop()] if batches and len(batches[-1]) < group else []
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return [int(p) for batch in shuffled + last for p in batch]
