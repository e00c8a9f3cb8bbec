"""Variable-length data: the ragged cache, padded batches, seeded crops and length bucketing."""

import numpy as np
import pytest
from torch.utils.data import DataLoader

from ser_lightning.data.bucketing import LengthBucketedShuffle, padding_share
from ser_lightning.data.cache import ArrayCache
from ser_lightning.data.loading import collate_batch
from ser_lightning.data.ragged import (
    RaggedArray,
    RaggedUtterances,
    build_ragged,
    crop_start,
    load_ragged,
    pad_batch,
)
from ser_lightning.data.sampling import EpochSeededShuffle
from ser_lightning.utils.errors import InvalidSetting


def lengths_like_a_corpus(n=600, seed=0):
    return np.random.default_rng(seed).integers(10, 500, n)


def test_ragged_entry_round_trips_memory_mapped_and_is_built_once(tmp_path):
    cache = ArrayCache(tmp_path)
    lengths = np.array([3, 0, 5, 1])
    rows = [np.arange(n, dtype=np.float32) + 10 * i for i, n in enumerate(lengths)]

    def fill(i, out):
        out[:] = rows[i]

    assert build_ragged(cache, "waveforms-full", "k1", lengths, (), fill, {"note": "test"})
    assert not build_ragged(cache, "waveforms-full", "k1", lengths, (), fill)  # reused, verified
    ragged = load_ragged(cache, "waveforms-full", "k1")
    assert isinstance(ragged.data, np.memmap) and len(ragged) == 4
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(ragged[i], row)


def test_ragged_array_refuses_lengths_that_do_not_add_up():
    with pytest.raises(InvalidSetting, match="add up"):
        RaggedArray(np.zeros(5, np.float32), np.array([2, 2]))


def test_pad_batch_pads_to_the_longest_item_with_lengths_and_mask():
    batch = pad_batch([np.ones((2, 3)), np.ones((4, 3))], time_last=True)
    assert batch["data"].shape == (2, 3, 4)
    assert batch["lengths"].tolist() == [2, 4]
    assert batch["mask"].tolist() == [[True, True, False, False], [True] * 4]
    assert batch["data"][0, :, 2:].abs().sum() == 0


def test_training_crops_are_seeded_per_epoch_and_row_and_evaluation_crops_are_central():
    assert crop_start(100, 40, 7, 3) == crop_start(100, 40, 7, 3)
    starts = {crop_start(100, 40, seed, 3) for seed in range(20)}
    assert len(starts) > 5 and all(0 <= s <= 60 for s in starts)
    assert crop_start(100, 40, None, 3) == 30
    assert crop_start(30, 40, 7, 3) == 0


def test_ragged_utterances_serve_padded_cropped_batches_through_a_dataloader():
    lengths = np.array([5, 12, 3])
    array = RaggedArray(np.arange(lengths.sum(), dtype=np.float32), lengths)
    labels = np.array([0, 1, 2])
    data = RaggedUtterances(array, np.array([2, 1, 0]), labels, "waveform", max_length=8)
    assert data.lengths().tolist() == [3, 8, 5]
    loader = DataLoader(data, batch_size=3, collate_fn=collate_batch)
    batch = next(iter(loader))
    assert batch["waveform"].shape == (3, 8)
    assert batch["lengths"].tolist() == [3, 8, 5] and batch["label"].tolist() == [2, 1, 0]
    np.testing.assert_array_equal(batch["waveform"][1].numpy(), np.arange(5, 17)[2:10])  # centre crop
    seeded = data.__getitems__([(1, 11)])["waveform"][0].numpy()
    again = data.__getitems__([(1, 11)])["waveform"][0].numpy()
    np.testing.assert_array_equal(seeded, again)
    with pytest.raises(InvalidSetting, match="max_duration_s"):
        RaggedUtterances(array, np.array([0]), labels, "waveform", max_length=0)


def test_bucketed_order_is_a_function_of_seed_and_epoch_only():
    lengths = lengths_like_a_corpus()
    epoch = {"now": 0}
    sampler = LengthBucketedShuffle(lengths, 16, seed=3, epoch=lambda: epoch["now"], chunk_batches=4)
    first = list(sampler)
    assert sorted(first) == list(range(len(lengths)))
    assert first == list(LengthBucketedShuffle(lengths, 16, seed=3, epoch=lambda: 0, chunk_batches=4))
    epoch["now"] = 1
    assert list(sampler) != first
    assert list(LengthBucketedShuffle(lengths, 16, seed=4, epoch=lambda: 0, chunk_batches=4)) != first


def test_bucketing_drops_the_padding_share():
    lengths = lengths_like_a_corpus()
    plain = list(EpochSeededShuffle(len(lengths), seed=3, epoch=lambda: 0))
    bucketed = list(LengthBucketedShuffle(lengths, 16, seed=3, epoch=lambda: 0))
    assert padding_share(lengths, bucketed, 16) < 0.1 < 0.3 < padding_share(lengths, plain, 16)


@pytest.mark.parametrize("item_seeds", [False, True])
def test_bucketed_shards_under_ddp_are_disjoint_and_batch_similar_lengths(item_seeds):
    lengths = lengths_like_a_corpus(603)
    shards = [
        list(LengthBucketedShuffle(lengths, 8, 5, lambda: 2, item_seeds, num_replicas=3, rank=r))
        for r in range(3)
    ]
    if item_seeds:
        shards = [[p for p, _ in shard] for shard in shards]
    assert all(len(s) == 201 for s in shards)
    assert sorted(p for s in shards for p in s) == list(range(603))  # 603 is a multiple of 3: no repeats
    for step in range(0, 200, 8):  # one step's batches on all ranks come from one group
        group = np.concatenate([lengths[s[step : step + 8]] for s in shards])
        assert group.max() - group.min() < 100


def test_bucketed_resume_within_skips_the_batches_already_trained():
    lengths = lengths_like_a_corpus()
    whole = list(LengthBucketedShuffle(lengths, 16, seed=3, epoch=lambda: 4))
    resumed = LengthBucketedShuffle(lengths, 16, seed=3, epoch=lambda: 4)
    resumed.resume_within(4, 5 * 16)
    assert list(resumed) == whole[80:]
    assert list(resumed) == whole  # only once


def test_bucketing_refuses_bad_settings():
    with pytest.raises(InvalidSetting, match="bucket_chunk_batches"):
        LengthBucketedShuffle(np.array([1, 2]), 2, 0, chunk_batches=0)
    with pytest.raises(InvalidSetting, match="non-negative"):
        LengthBucketedShuffle(np.array([1, -2]), 2, 0)
