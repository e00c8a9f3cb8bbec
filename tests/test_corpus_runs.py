"""Label sets and protocols end to end: data module, split.csv, class weights, a real run."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ser_lightning.data.corpora.crema_d import CREMA_D_EMOTIONS
from ser_lightning.data.datamodule import SERDataModule, build_data_module
from ser_lightning.features import LogMel
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.runs import assert_complete_test_result

# Seven men and five women of CREMA-D (genders from the corpus's demographics table).
ACTORS = (1001, 1002, 1003, 1004, 1005, 1006, 1011, 1014, 1015, 1016, 1017, 1018)
CLIP_SECONDS = 0.5


@pytest.fixture(scope="module")
def crema_root(tmp_path_factory) -> Path:
    """A CREMA-D-shaped AudioWAV folder: 12 actors x 6 emotions, one tone per emotion."""
    from .helpers.audio import write_tone

    root = tmp_path_factory.mktemp("crema") / "AudioWAV"
    for actor in ACTORS:
        for i, code in enumerate(CREMA_D_EMOTIONS):
            write_tone(
                root / f"{actor}_DFA_{code}_XX.wav", seconds=CLIP_SECONDS, freq=150.0 + 60 * i + actor % 100
            )
    return root


def make_dm(root, cache_dir, **kwargs) -> SERDataModule:
    options = {"corpus": "crema_d", "split": "kfold", "fold": 1, "num_folds": 3, "batch_size": 8, **kwargs}
    return build_data_module(
        features=LogMel(sample_rate=16000, n_mels=16),
        root=str(root),
        duration=CLIP_SECONDS,
        cache_dir=str(cache_dir),
        **options,
    )


def test_corpus_labels_are_consistent_end_to_end(crema_root, tmp_path):
    dm = make_dm(crema_root, tmp_path / "cache", labels="corpus")
    # known before setup, so that train.py can size the model from it
    assert (
        dm.label_names == ("neutral", "happy", "sad", "angry", "fearful", "disgust") and dm.num_classes == 6
    )
    dm.prepare_data()
    dm.setup("fit")
    table = dm.manifest.table
    assert (table["label"] == table["emotion"].map(dm.label_names.index)).all()
    batch = next(iter(dm.train_dataloader()))
    assert int(batch["label"].max()) < 6
    assert (table["label"].to_numpy()[batch["row"].numpy()] == batch["label"].numpy()).all()
    weights = dm.class_weights()
    assert weights.shape == (6,) and torch.allclose(weights, torch.ones(6))  # one clip per emotion and actor

    split = pd.read_csv(dm.manifest.write_records(tmp_path / "run")["split"])
    assert (split["label"] == split["emotion"].map(dm.label_names.index)).all()
    assert split.groupby("actor")["split"].nunique().max() == 1

    protocol = dm.manifest.protocol()
    assert protocol["split"] == "kfold" and protocol["fold"] == 1 and protocol["num_folds"] == 3
    assert protocol["corpus"] == "crema_d" and protocol["labels"] == list(dm.label_names)
    assert set(protocol["test_actors"]) == set(split.loc[split["split"] == "test", "actor"].astype(str))


def test_label_list_and_all(crema_root, tmp_path):
    subset = make_dm(crema_root, tmp_path / "cache", labels=["sad", "happy"], split="actor")
    assert subset.label_names == ("happy", "sad")  # labels.py order, whatever order was asked
    subset.setup("fit")
    assert sorted(subset.manifest.table["emotion"].unique()) == ["happy", "sad"] and set(
        subset.manifest.table["label"]
    ) == {
        0,
        1,
    }
    assert subset.manifest.scan.excluded_by_filter == 4 * len(ACTORS)

    everything = make_dm(crema_root, tmp_path / "cache", labels="all", split="actor")
    everything.setup("fit")
    weights = everything.class_weights().numpy()
    assert everything.num_classes == 8 and weights[1] == 0 and weights[7] == 0  # no calm, no surprised
    assert np.all(weights[[0, 2, 3, 4, 5, 6]] > 0)


@pytest.mark.parametrize(
    "labels, message",
    [
        ("present", "data.labels='present' is not valid"),
        (["happy"], "at least two different emotions"),
        (["happy", "joyful"], r"unknown: \['joyful'\]"),
    ],
)
def test_bad_label_settings_are_refused(tmp_path, labels, message):
    with pytest.raises(ValueError, match=message):
        make_dm(tmp_path, tmp_path / "cache", labels=labels)


def test_test_only_split_for_evaluation(crema_root, tmp_path):
    dm = make_dm(crema_root, tmp_path / "cache", labels="all", split="test_only")
    dm.setup("test")
    assert len(dm.manifest.indices["test"]) == len(ACTORS) * 6 and len(dm.manifest.indices["train"]) == 0
    assert dm.manifest.protocol()["split"] == "test_only"
    assert len(next(iter(dm.test_dataloader()))["label"]) == 8
    with pytest.raises(ValueError, match="data.split=test_only puts every file in the test set"):
        dm.train_dataloader()


def test_fdr_run_on_crema_d_records_the_protocol(crema_root, tmp_path):
    cfg = compose_train(
        [
            "data=crema_d",
            f"data.root={crema_root}",
            f"data.duration={CLIP_SECONDS}",
            "data.split=kfold",
            "data.fold=2",
            "data.num_folds=3",
            "debug=fdr",
            "model.class_weights=true",
        ],
        tmp_path,
        tmp_path / "cache",
    )
    assert cfg.data.labels == "corpus" and cfg.data.corpus == "crema_d"
    metrics, objects = train(cfg)
    assert_complete_test_result(tmp_path, metrics)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["labels"] == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    protocol = summary["protocol"]
    assert (protocol["split"], protocol["fold"], protocol["num_folds"], protocol["corpus"]) == (
        "kfold",
        2,
        3,
        "crema_d",
    )
    model = objects["model"]
    assert model.hparams.labels == summary["labels"]
    with torch.no_grad():
        logits = model(torch.zeros(1, *model.model.input_shape))
    assert logits.shape == (1, 6) and model.class_weight.shape == (6,)
    split = pd.read_csv(tmp_path / "split.csv")
    assert set(split.loc[split["split"] == "test", "actor"].astype(str)) == set(protocol["test_actors"])
