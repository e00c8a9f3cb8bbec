"""Speaker-independent protocols: k-fold, leave-one-speaker-out, cross-corpus, test-only."""

import numpy as np
import pandas as pd
import pytest

from ser_lightning.data.splits import (
    SPLIT_NAMES,
    SPLITS,
    CrossCorpusSplit,
    EvalOnlySplit,
    KFoldSplit,
    LeaveOneSpeakerOutSplit,
    RandomSplit,
    Splitter,
    make_split,
    split_indices,
)
from ser_lightning.data.utterances import make_table
from ser_lightning.labels import EMOTIONS

from .helpers.tables import ravdess_like_table


def mixed_table() -> pd.DataFrame:
    """A combined table shaped like ser_en, scaled down: uneven corpora and genders."""
    rows = []
    speakers = (
        [("crema_d", f"{1000 + i}", "male" if i % 3 else "female") for i in range(1, 14)]
        + [("ravdess", f"{i:02d}", "male" if i % 2 else "female") for i in range(1, 9)]
        + [("savee", s, "male") for s in ("DC", "JE", "JK", "KL")]
        + [("tess", s, "female") for s in ("OAF", "YAF")]
    )
    for corpus, speaker, gender in speakers:
        for emotion in EMOTIONS[2:6]:
            rows.append(
                {
                    "path": f"/c/{corpus}/{speaker}_{emotion}.wav",
                    "emotion": emotion,
                    "actor": f"{corpus}:{speaker}",
                    "gender": gender,
                    "intensity": "unspecified",
                    "statement": "s",
                    "vocal_channel": "speech",
                    "corpus": corpus,
                }
            )
    return make_table(rows)


def actors_by_split(table: pd.DataFrame, assignment: pd.Series) -> dict[str, set]:
    frame = table.assign(split=assignment.to_numpy())
    assert frame.groupby("actor")["split"].nunique().max() == 1, "an actor is in two splits of one run"
    return {name: set(group["actor"]) for name, group in frame.groupby("split")}


def test_ravdess_six_folds_are_the_consecutive_actor_quartets():
    table = ravdess_like_table()
    folds = KFoldSplit().folds(table)
    assert folds == [[f"{4 * k + i:02d}" for i in range(1, 5)] for k in range(6)]


@pytest.mark.parametrize(
    "make_table_fn, num_folds", [(ravdess_like_table, 6), (mixed_table, 5), (mixed_table, 3)]
)
def test_kfold_invariants(make_table_fn, num_folds):
    table = make_table_fn()
    all_actors = set(table["actor"])
    genders = table.groupby("actor")["gender"].first()
    tested = []
    for fold in range(num_folds):
        split = KFoldSplit(fold=fold, num_folds=num_folds, seed=3)
        assignment = split(table)
        groups = actors_by_split(table, assignment)
        assert groups["test"] == set(split.folds(table)[fold])
        assert (
            groups["train"]
            and groups["val"]
            and groups["train"] | groups["val"] | groups["test"] == all_actors
        )
        assert {genders[a] for a in groups["test"]} == {"male", "female"}, f"fold {fold} lacks a gender"
        tested += sorted(groups["test"])
    assert sorted(tested) == sorted(all_actors)  # every actor tested exactly once across the folds
    sizes = [len(f) for f in KFoldSplit(num_folds=num_folds).folds(table)]
    assert max(sizes) - min(sizes) <= 1


def test_kfold_balances_corpora_and_genders_of_a_combined_table():
    table = mixed_table()
    genders = table.groupby("actor")["gender"].first()
    for fold in KFoldSplit(num_folds=3).folds(table):
        corpora = {a.split(":")[0] for a in fold}
        assert {"crema_d", "ravdess", "savee"} <= corpora  # corpora with >= 3 actors reach every fold
        assert {genders[a] for a in fold if a.startswith("ravdess")} == {"male", "female"}


def test_kfold_validation_comes_from_training_actors_per_gender():
    table = ravdess_like_table()
    split = KFoldSplit(fold=2, seed=5)
    groups = actors_by_split(table, split(table))
    assert groups["test"] == {"09", "10", "11", "12"}
    assert len(groups["val"]) == 4 and len(groups["train"]) == 16
    assert sorted(int(a) % 2 for a in groups["val"]) == [0, 0, 1, 1]  # two women, two men
    assert {k: len(v) for k, v in split_indices(split(table)).items()} == {
        "train": 960,
        "val": 240,
        "test": 240,
    }
    other_seed = actors_by_split(table, KFoldSplit(fold=2, seed=6)(table))
    assert other_seed["test"] == groups["test"]  # folds do not depend on the seed ...
    assert KFoldSplit(fold=2, seed=5)(table).equals(split(table))  # ... and the rest is reproducible


def test_leave_one_speaker_out():
    table = ravdess_like_table()
    tested = []
    for fold in range(24):
        groups = actors_by_split(table, LeaveOneSpeakerOutSplit(fold=fold)(table))
        assert len(groups["test"]) == 1 and len(groups["val"]) == 4 and len(groups["train"]) == 19
        tested += list(groups["test"])
    assert tested == [f"{a:02d}" for a in range(1, 25)]
    assert LeaveOneSpeakerOutSplit(fold=3).describe(table)["num_folds"] == 24
    as_kfold = make_split("kfold", (0.7, 0.15, 0.15), 0, fold=0, num_folds=24).folds(table)
    assert all(len(f) == 1 for f in as_kfold) and sorted(sum(as_kfold, [])) == tested


def test_cross_corpus_tests_one_corpus():
    table = mixed_table()
    groups = actors_by_split(table, CrossCorpusSplit(test_corpus="ravdess")(table))
    assert {a.split(":")[0] for a in groups["test"]} == {"ravdess"} and len(groups["test"]) == 8
    assert not {a for a in groups["train"] | groups["val"] if a.startswith("ravdess")}
    with pytest.raises(ValueError, match="data.test_corpus"):
        CrossCorpusSplit(test_corpus="emodb")(table)
    with pytest.raises(ValueError, match="several corpora"):
        CrossCorpusSplit(test_corpus="ravdess")(ravdess_like_table())


def test_eval_only_split_puts_everything_in_test():
    table = ravdess_like_table(4)
    assert set(EvalOnlySplit()(table)) == {"test"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "kfold", "fold": 6}, r"data.fold=6 must be in 0..5"),
        ({"name": "kfold", "num_folds": 1}, "data.num_folds=1 must be between 2 and the number of actors"),
        ({"name": "kfold", "num_folds": 25}, "data.num_folds=25.*24.*loso"),
        ({"name": "loso", "fold": 24}, r"data.fold=24 must be in 0..23"),
        ({"name": "actor", "test_corpus": "tess"}, "only applies to data.split=cross_corpus"),
        ({"name": "speaker"}, "data.split='speaker' is not known"),
    ],
)
def test_protocol_mistakes_name_the_config_key(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        make_split(name, (0.7, 0.15, 0.15), 0, **kwargs)(ravdess_like_table())


def test_too_few_actors_for_validation_is_explained():
    two_speakers = mixed_table().query("corpus == 'tess'")
    with pytest.raises(ValueError, match="leaves 1 actor.*validation and training.*data.split=random"):
        KFoldSplit(num_folds=2)(two_speakers)


def test_describe_records_the_protocol():
    table = ravdess_like_table()
    record = KFoldSplit(fold=1, seed=0).describe(table)
    assert record["split"] == "kfold" and record["fold"] == 1 and record["num_folds"] == 6
    assert record["test_actors"] == ["05", "06", "07", "08"] and len(record["val_actors"]) == 4
    assert np.isin(record["val_actors"], record["test_actors"]).sum() == 0


def test_every_protocol_is_a_splitter_named_by_its_data_split_value():
    assert sorted(SPLITS) == [
        "actor",
        "cross_corpus",
        "emobox",
        "kfold",
        "loso",
        "official",
        "random",
        "sessions",
        "test_only",
    ]
    table = mixed_table()  # several corpora, so that cross_corpus applies too
    for name, protocol in SPLITS.items():
        assert issubclass(protocol, Splitter) and protocol is not Splitter and protocol.name == name
        test_corpus = "ravdess" if name == "cross_corpus" else None
        splitter = make_split(name, (0.6, 0.2, 0.2), 5, fold=1, num_folds=4, test_corpus=test_corpus)
        assert type(splitter) is protocol and splitter.ratios == (0.6, 0.2, 0.2) and splitter.seed == 5
        # IEMOCAP's sessions need IEMOCAP speakers (tests/test_corpus_iemocap.py), EmoBox's lists its
        # table (tests/test_corpus_emobox.py)
        if name not in ("sessions", "emobox"):
            assert splitter.describe(table)["split"] == name
        # only test_only has no training data, and only then is an empty train split allowed
        assert splitter.needs_training_data == (name != "test_only")
        assert splitter.required_splits() == (SPLIT_NAMES if name != "test_only" else ("test",))
        # only the random split (and EmoBox's lists, validation drawn by utterance) put one speaker in two splits
        assert splitter.speaker_independent == (name not in ("random", "emobox"))
    # each protocol keeps the settings it uses
    assert make_split("kfold", (0.7, 0.15, 0.15), 0, fold=2, num_folds=3) == KFoldSplit(
        fold=2, num_folds=3, seed=0
    )
    assert make_split("loso", (0.7, 0.15, 0.15), 0, fold=7) == LeaveOneSpeakerOutSplit(fold=7, seed=0)
    assert make_split("cross_corpus", (0.7, 0.15, 0.15), 0, test_corpus="tess").test_corpus == "tess"
    assert make_split("random", (0.7, 0.15, 0.15), 3, fold=2) == RandomSplit(seed=3)
    assert SPLIT_NAMES == ("train", "val", "test")
    with pytest.raises(NotImplementedError):
        Splitter()(table)
