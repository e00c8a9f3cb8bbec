import numpy as np
import pytest

from ser_lightning.data.splits import ActorSplit, RandomSplit, split_indices

from .helpers.tables import ravdess_like_table


def test_random_split_exact_sizes_and_stratified():
    table = ravdess_like_table()
    assert len(table) == 1440
    parts = split_indices(RandomSplit(seed=1)(table))
    assert {k: len(v) for k, v in parts.items()} == {"train": 1008, "val": 216, "test": 216}
    for name, expected_share in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        counts = table["emotion"].iloc[parts[name]].value_counts()
        assert abs(counts["neutral"] - 96 * expected_share) <= 1
        assert abs(counts["angry"] - 192 * expected_share) <= 1
    all_rows = np.concatenate(list(parts.values()))
    assert sorted(all_rows) == list(range(1440))


def test_random_split_is_seeded():
    table = ravdess_like_table()
    a, b, c = (RandomSplit(seed=s)(table) for s in (3, 3, 4))
    assert a.equals(b) and not a.equals(c)


def test_actor_split_is_speaker_independent_with_both_genders():
    table = ravdess_like_table()
    assignment = ActorSplit(seed=7)(table)
    per_actor = table.assign(split=assignment.to_numpy()).groupby("actor")["split"].nunique()
    assert per_actor.max() == 1  # no actor in two splits
    actors = table.assign(split=assignment.to_numpy()).groupby("split")["actor"].unique()
    assert {k: len(v) for k, v in actors.items()} == {"train": 16, "val": 4, "test": 4}
    for split, members in actors.items():
        genders = {int(a) % 2 for a in members}
        assert genders == {0, 1}, f"{split} lacks a gender"
    sizes = assignment.value_counts().to_dict()
    assert sizes == {"train": 960, "val": 240, "test": 240}


def test_actor_split_is_seeded_and_needs_enough_actors():
    table = ravdess_like_table()
    assert ActorSplit(seed=1)(table).equals(ActorSplit(seed=1)(table))
    assert not ActorSplit(seed=1)(table).equals(ActorSplit(seed=2)(table))
    with pytest.raises(ValueError, match="at least 3 female actors"):
        ActorSplit()(ravdess_like_table(4))


@pytest.mark.parametrize("ratios", [(0.7, 0.2, 0.2), (0.8, 0.2, 0.0), (0.5, 0.5)])
def test_bad_ratios_are_refused(ratios):
    with pytest.raises(ValueError, match="data.split_ratios"):
        RandomSplit(ratios=ratios)(ravdess_like_table(4))
