"""Leakage checks before training: speakers and identical recordings in two splits."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ser_lightning.data.leakage import LeakageError, check_leakage, recording_hashes, speaker_note
from ser_lightning.data.splits import ActorSplit, KFoldSplit, RandomSplit

from .helpers.tables import ravdess_like_table


def manifest(table: pd.DataFrame, splitter) -> SimpleNamespace:
    return SimpleNamespace(table=table, assignment=splitter(table), splitter=splitter, root="/c")


def distinct_waveforms(n: int, samples: int = 64) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, samples)).astype(np.float32)


def test_a_clean_speaker_independent_split_passes():
    table = ravdess_like_table(8)
    report = check_leakage(manifest(table, ActorSplit(seed=1)), distinct_waveforms(len(table)))
    assert report.to_dict()["speakers_in_several_splits"] == 0 and report.recordings_checked == len(table)


def test_an_injected_speaker_overlap_stops_with_the_list():
    table = ravdess_like_table(8)
    m = manifest(table, KFoldSplit(fold=0, num_folds=4, seed=0))
    test_actor = table["actor"][m.assignment.to_numpy() == "test"].iloc[0]
    train_row = int(np.flatnonzero(m.assignment.to_numpy() == "train")[0])
    m.table = table.copy()
    m.table.loc[train_row, "actor"] = test_actor  # a training clip now has a test speaker
    with pytest.raises(
        LeakageError, match=rf"speaker\(s\) are in more than one split.*{test_actor} \(test, train\)"
    ):
        check_leakage(m, distinct_waveforms(len(table)))


def test_an_injected_duplicate_recording_stops_with_both_names():
    table = ravdess_like_table(8)
    m = manifest(table, ActorSplit(seed=1))
    waveforms = distinct_waveforms(len(table))
    split = m.assignment.to_numpy()
    train_row, test_row = int(np.flatnonzero(split == "train")[0]), int(np.flatnonzero(split == "test")[0])
    waveforms[test_row] = waveforms[train_row]  # the same recording under another name
    with pytest.raises(LeakageError, match="1 recording.*more than one split") as caught:
        check_leakage(m, waveforms)
    assert table["path"][train_row] in str(caught.value) and table["path"][test_row] in str(caught.value)


def test_copies_within_one_split_are_counted_not_refused():
    table = ravdess_like_table(8)
    m = manifest(table, ActorSplit(seed=1))
    waveforms = distinct_waveforms(len(table))
    rows = np.flatnonzero(m.assignment.to_numpy() == "train")[:2]
    waveforms[rows[1]] = waveforms[rows[0]]
    assert check_leakage(m, waveforms).copies_within_one_split == 1


def test_the_random_split_is_allowed_and_counts_its_heard_speakers():
    table = ravdess_like_table(24)
    m = manifest(table, RandomSplit(seed=0))
    check_leakage(m, distinct_waveforms(len(table)))  # speaker-dependent by design: no error
    note = speaker_note(m)
    assert note["speaker_independent"] is False and note["test_clips"] == 216
    assert note["test_clips_with_training_speaker"] == 216  # 24 actors, 1008 training clips: all heard
    independent = speaker_note(manifest(table, ActorSplit(seed=0)))
    assert independent["speaker_independent"] and independent["test_clips_with_training_speaker"] == 0


def test_hashes_tell_recordings_apart_by_content_only():
    waves = distinct_waveforms(3)
    waves[2] = waves[0]
    hashes = recording_hashes(waves)
    assert hashes[0] == hashes[2] != hashes[1]
