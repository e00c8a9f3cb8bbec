"""Per-epoch orders and per-clip seeds: what makes shuffling and augmentation replayable."""

import random

import numpy as np
import pytest
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper

from ser_lightning.data.sampling import EpochSeededShuffle
from ser_lightning.utils.seeding import seeded_global_rngs


def test_the_order_and_item_seeds_depend_on_seed_and_epoch_only():
    epoch = {"now": 2}
    sampler = EpochSeededShuffle(50, seed=7, epoch=lambda: epoch["now"], item_seeds=True)
    first, again = list(sampler), list(sampler)
    assert first == again  # the same epoch asked twice (a resume) gives the same pairs
    positions = [p for p, _ in first]
    assert sorted(positions) == list(range(50)) and positions != list(range(50))
    assert len({s for _, s in first}) == 1  # every position carries its epoch's seed
    epoch["now"] = 3
    later = list(sampler)
    assert [p for p, _ in later] != positions and later[0][1] != first[0][1]
    plain = EpochSeededShuffle(50, seed=7, epoch=lambda: 2)
    assert list(plain) == positions  # item seeds do not change the order


def test_seeded_block_draws_the_same_numbers_and_restores_the_callers_streams():
    random.seed(1)
    np.random.seed(1)
    expected = (random.random(), np.random.random())
    random.seed(1)
    np.random.seed(1)
    with seeded_global_rngs(99, 5):
        inside = (random.random(), np.random.random())
    assert (random.random(), np.random.random()) == expected  # the caller's streams are untouched
    with seeded_global_rngs(99, 5, restore=False):
        assert (random.random(), np.random.random()) == inside  # same entropy, same draws
    with seeded_global_rngs(99, 6, restore=False):
        assert (random.random(), np.random.random()) != inside


@pytest.mark.parametrize("size", [23, 24])
def test_each_rank_gets_the_share_lightnings_wrapper_would_deal(size):
    for rank in range(3):
        dealt = EpochSeededShuffle(size, seed=7, epoch=lambda: 1, num_replicas=3, rank=rank)
        wrapped = DistributedSamplerWrapper(
            EpochSeededShuffle(size, seed=7, epoch=lambda: 1), 3, rank, shuffle=False
        )
        assert list(dealt) == list(wrapped) and len(dealt) == len(wrapped) == 8


def test_a_resumed_epoch_leaves_out_the_positions_trained_and_replays_the_generators():
    whole = EpochSeededShuffle(40, seed=7, epoch=lambda: 2, num_replicas=2, rank=1)
    expected = list(whole)
    after_order = np.random.random()  # the generators as the epoch's order left them
    resumed = EpochSeededShuffle(40, seed=7, epoch=lambda: 2, num_replicas=2, rank=1)
    resumed.resume_within(2, 8)
    assert list(resumed) == expected[8:]
    assert np.random.random() == after_order
    assert list(resumed) == expected  # once: the next iteration of that epoch is whole again
    other_epoch = EpochSeededShuffle(40, seed=7, epoch=lambda: 3)
    other_epoch.resume_within(2, 8)
    assert len(list(other_epoch)) == 40  # a resume point of another epoch is not applied
