"""Seeding of the global random generators: one seed per epoch, one per item, all derived alike.

`epoch_seed(seed, epoch)` gives unrelated streams for distinct pairs; `seed_generators` seeds
torch, numpy and Python at once; `seeded_global_rngs(*entropy)` seeds Python's and NumPy's
generators for one block (augmenting one clip) and puts their state back afterwards.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import torch
from torch.utils.data import get_worker_info


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for one epoch; distinct (seed, epoch) pairs give unrelated streams.

    Returns:
        A non-negative integer below 2**63, derived from `seed` and `epoch` by a SeedSequence.
    """
    return int(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch)]).generate_state(2, np.uint64)[0] >> 1
    )


def seed_generators(seed: int) -> None:
    """Seed torch (all devices), numpy and Python's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


@contextmanager
def seeded_global_rngs(*entropy: int, restore: bool | None = None):
    """Seed Python's and NumPy's global generators (what audiomentations draws from) for one block.

    Their previous state is put back afterwards, so the caller's streams are untouched.

    Saving and putting back the previous state is most of this function's cost (about 0.1 ms).
    `restore=None` does it only outside DataLoader worker processes: the datasets that use this
    reseed for every item, so a worker has no stream of its own to keep.
    """
    if restore is None:
        restore = get_worker_info() is None
    saved = (random.getstate(), np.random.get_state()) if restore else None
    sequence = np.random.SeedSequence([int(e) for e in entropy])
    random.seed(int(sequence.generate_state(1, dtype=np.uint64)[0]))
    np.random.seed(sequence.generate_state(4))
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
