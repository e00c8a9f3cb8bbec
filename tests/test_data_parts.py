"""The parts the data module is made of, each on its own: the prepare step (CorpusSource and
prepare_manifest), the feature store and the loader settings."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.data.audio import load_waveform
from ser_lightning.data.cache import ArrayCache
from ser_lightning.data.feature_store import FeatureStore
from ser_lightning.data.loading import LoaderSettings, available_cores
from ser_lightning.data.manifest import CorpusSource, prepare_manifest
from ser_lightning.data.splits import ActorSplit, EvalOnlySplit, Splitter
from ser_lightning.features import LogMel
from ser_lightning.labels import EMOTIONS

from .helpers.corpora import tone_corpus

# 6 actors (3 men, 3 women) x 32 takes; the actor split gives val and test at least one actor
# of each gender, which leaves one per gender to train on.
TONE_SPLIT_SIZES = {"train": 64, "val": 64, "test": 64}


@pytest.fixture(scope="module")
def tone_root(tmp_path_factory) -> Path:
    root = tone_corpus(tmp_path_factory.mktemp("parts") / "corpus")
    # a file with a RAVDESS name that is not audio: screened out, listed in rejected_files.csv
    (root / "Actor_01" / "03-01-03-02-02-02-01.wav").write_bytes(b"not audio at all")
    return root


def small_features() -> LogMel:
    return LogMel(sample_rate=16000, n_mels=16, n_fft=256, hop_length=128)


# ------------------------------------------------------------------ the prepare step
def test_prepare_manifest_scans_screens_and_splits(tone_root, tmp_path):
    source = CorpusSource("ravdess", str(tone_root))
    manifest = prepare_manifest(source, ActorSplit(), ArrayCache(str(tmp_path / "cache")))
    assert manifest.root == str(tone_root) and manifest.corpus == "ravdess"
    assert manifest.label_names == tuple(EMOTIONS)
    assert len(manifest.table) == 192 and manifest.split_sizes == TONE_SPLIT_SIZES
    assert [Path(r.path).name for r in manifest.scan.rejected] == ["03-01-03-02-02-02-01.wav"]
    # indices: table rows of each split, in table order, every row in exactly one split
    for name, rows in manifest.indices.items():
        assert (np.diff(rows) > 0).all() and (manifest.assignment.to_numpy()[rows] == name).all()
    assert sorted(np.concatenate(list(manifest.indices.values())).tolist()) == list(range(192))
    np.testing.assert_array_equal(manifest.labels, manifest.table["label"].to_numpy())
    # every actor has 4 takes of each emotion: balanced classes weigh 1 each
    np.testing.assert_allclose(manifest.class_weights().numpy(), np.ones(8))

    protocol = manifest.protocol()
    assert protocol["corpus"] == "ravdess" and protocol["root"] == str(tone_root)
    assert protocol["split"] == "actor" and protocol["speaker_independent"] is True
    assert protocol["labels"] == list(EMOTIONS) and protocol["split_sizes"] == TONE_SPLIT_SIZES


def test_write_records_writes_the_split_and_the_rejected_files(tone_root, tmp_path):
    source = CorpusSource("ravdess", str(tone_root))
    manifest = prepare_manifest(source, ActorSplit(), ArrayCache(str(tmp_path / "cache")))
    written = manifest.write_records(tmp_path / "run")
    assert written == {
        "split": tmp_path / "run" / "split.csv",
        "rejected": tmp_path / "run" / "rejected_files.csv",
    }
    split = pd.read_csv(written["split"])
    assert list(split.columns[:2]) == ["split", "path"] and len(split) == 192
    assert split["split"].value_counts().to_dict() == TONE_SPLIT_SIZES
    assert split["path"].str.startswith("Actor_").all()  # relative to the corpus root
    assert (split["label"] == split["emotion"].map(EMOTIONS.index)).all()
    assert split.groupby("actor")["split"].nunique().max() == 1
    rejected = pd.read_csv(written["rejected"])
    assert list(rejected.columns) == ["path", "stage", "reason"]
    assert [Path(p).name for p in rejected["path"]] == ["03-01-03-02-02-02-01.wav"]

    # a clean corpus writes no rejected list
    clean = tone_corpus(tmp_path / "clean")
    clean_manifest = prepare_manifest(
        CorpusSource("ravdess", str(clean)), ActorSplit(), ArrayCache(str(tmp_path / "cache"))
    )
    assert set(clean_manifest.write_records(tmp_path / "clean_run")) == {"split"}
    assert not (tmp_path / "clean_run" / "rejected_files.csv").exists()


@dataclass(frozen=True)
class EverythingToTrain(Splitter):
    """A protocol that leaves validation and test empty."""

    name: ClassVar[str] = "everything_to_train"

    def __call__(self, table: pd.DataFrame) -> pd.Series:
        return pd.Series(["train"] * len(table), name="split")


def test_an_empty_split_the_protocol_needs_names_the_corpus_root(tone_root, tmp_path):
    source = CorpusSource("ravdess", str(tone_root))
    cache = ArrayCache(str(tmp_path / "cache"))
    message = rf"split 'everything_to_train' left \['val', 'test'\] empty; the corpus at {re.escape(str(tone_root))} is too small"
    with pytest.raises(ValueError, match=message):
        prepare_manifest(source, EverythingToTrain(), cache)
    # test_only needs only a test split: an empty train split is what it means
    evaluation = prepare_manifest(source, EvalOnlySplit(), cache)
    assert evaluation.split_sizes == {"train": 0, "val": 0, "test": 192}


def test_corpus_source_keeps_only_the_labels_asked_for(tone_root, tmp_path):
    source = CorpusSource("ravdess", str(tone_root), labels=["sad", "happy"])
    assert source.label_names == ("happy", "sad") and source.parser.name == "ravdess"
    manifest = prepare_manifest(source, ActorSplit(), ArrayCache(str(tmp_path / "cache")))
    assert len(manifest.table) == 48 and set(manifest.labels) == {0, 1}
    assert manifest.scan.excluded_by_filter == 144
    with pytest.raises(ValueError, match=r"data.corpus='no_such_corpus' is not known"):
        CorpusSource("no_such_corpus", str(tone_root))


# ------------------------------------------------------------------ the feature store
def test_feature_store_builds_once_and_a_second_store_reuses(tone_root, tmp_path):
    table = prepare_manifest(
        CorpusSource("ravdess", str(tone_root)), ActorSplit(), ArrayCache(str(tmp_path / "cache"))
    ).table
    audio = AudioSettings(sample_rate=16000, duration=0.3)
    store = FeatureStore(small_features(), audio, str(tmp_path / "cache"))
    keys = store.ensure(table, str(tone_root))
    assert store.events == ["built waveforms", "built features"]
    arrays = store.load(keys)
    assert arrays.keys == keys and arrays.waveforms.shape == (192, audio.num_samples)
    assert arrays.features.shape == (192, *store.features.output_shape(audio.num_samples))
    for row in (0, 100, 191):  # row i of each cache is the table's row i
        expected = load_waveform(table["path"][row], audio)
        np.testing.assert_array_equal(arrays.waveforms[row], expected)
        features = store.features.extract(torch.from_numpy(expected[None])).numpy()[0]
        np.testing.assert_allclose(arrays.features[row], features, rtol=1e-5, atol=1e-4)

    again = FeatureStore(small_features(), audio, str(tmp_path / "cache"))
    assert again.keys(table) == keys  # computed from fingerprints and settings, nothing built
    assert again.events == []
    assert again.ensure(table, str(tone_root)) == keys
    assert again.events == ["reused waveforms", "reused features"]
    np.testing.assert_array_equal(again.load(keys).features, arrays.features)


def test_feature_store_keys_follow_the_audio_and_feature_settings(tone_root, tmp_path):
    table = prepare_manifest(
        CorpusSource("ravdess", str(tone_root)), ActorSplit(), ArrayCache(str(tmp_path / "cache"))
    ).table
    cache = str(tmp_path / "cache")
    keys = FeatureStore(small_features(), AudioSettings(duration=0.3), cache).keys(table)
    for audio in (AudioSettings(duration=0.25), AudioSettings(duration=0.3, crop="start")):
        other = FeatureStore(small_features(), audio, cache).keys(table)
        assert other.waveforms != keys.waveforms and other.features != keys.features
    more_mels = LogMel(sample_rate=16000, n_mels=24, n_fft=256, hop_length=128)
    other = FeatureStore(more_mels, AudioSettings(duration=0.3), cache).keys(table)
    assert other.waveforms == keys.waveforms and other.features != keys.features
    # another set of files is another entry
    assert FeatureStore(small_features(), AudioSettings(duration=0.3), cache).keys(table.iloc[1:]) != keys
    with pytest.raises(ValueError, match="features.sample_rate=22050 differs from data.sample_rate=16000"):
        FeatureStore(LogMel(sample_rate=22050), AudioSettings(sample_rate=16000), cache)


# ------------------------------------------------------------------ the loader settings
def test_auto_workers_are_the_spare_cores_only_when_clips_are_augmented_in_workers():
    auto = LoaderSettings()
    assert auto.num_workers == "auto" and auto.batch_size == 32
    assert auto.workers(augmenting_in_workers=False) == 0
    assert auto.workers(augmenting_in_workers=True) == max(1, available_cores() - 1)
    given = LoaderSettings(num_workers=3)
    assert given.workers(augmenting_in_workers=True) == 3 and given.workers(augmenting_in_workers=False) == 3


def test_no_workers_while_augmenting_is_honoured_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="ser_lightning.data.loading"):
        assert LoaderSettings(num_workers=0).workers(augmenting_in_workers=True) == 0
    assert "data.num_workers=0" in caplog.text and "data.num_workers=auto" in caplog.text


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"batch_size": 0}, "data.batch_size=0 must be at least 1"),
        ({"num_workers": -1}, "data.num_workers=-1 must be auto or a whole number"),
        ({"num_workers": "many"}, "data.num_workers='many' must be auto or a whole number"),
        ({"num_workers": True}, "data.num_workers=True must be auto or a whole number"),
        ({"num_workers": 2.5}, "data.num_workers=2.5 must be auto or a whole number"),
        ({"pin_memory": "yes"}, "data.pin_memory='yes' must be true, false or auto"),
    ],
)
def test_invalid_loader_settings_are_refused_naming_the_key(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        LoaderSettings(**settings)


def test_pinning_needs_cuda(monkeypatch):
    assert not LoaderSettings(pin_memory=True).pin(torch.device("cpu"))  # no CUDA on this machine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert LoaderSettings().pin(torch.device("cuda:0")) and not LoaderSettings().pin(torch.device("cpu"))
    assert not LoaderSettings().pin(None)  # no trainer: nothing to copy to
    assert LoaderSettings(pin_memory=True).pin(None) and not LoaderSettings(pin_memory=False).pin(
        torch.device("cuda:0")
    )
