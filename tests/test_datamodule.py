import numpy as np
import pandas as pd
import pytest
import torch

import ser_lightning.data.feature_store as feature_store_module
from ser_lightning.data.datamodule import SERDataModule, build_data_module
from ser_lightning.features import LogMel

from .helpers.corpora import SMALL_DEMO


def make_dm(root, cache_dir, n_mels=32, **kwargs) -> SERDataModule:
    return build_data_module(
        features=LogMel(sample_rate=16000, n_mels=n_mels),
        root=str(root),
        demo=SMALL_DEMO,
        duration=SMALL_DEMO["duration"],
        cache_dir=str(cache_dir),
        **{"batch_size": 16, **kwargs},
    )


def test_batches_splits_and_records(small_demo_root, tmp_path):
    dm = make_dm(small_demo_root, tmp_path / "cache")
    dm.prepare_data()
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.manifest.indices.items()} == {"train": 480, "val": 120, "test": 120}
    assert dm.manifest.split_sizes == {"train": 480, "val": 120, "test": 120}
    batch = next(iter(dm.train_dataloader()))
    assert batch["features"].shape == (16, *dm.features.output_shape(dm.audio.num_samples)) == (16, 1, 32, 94)
    assert batch["label"].dtype == torch.int64 and batch["label"].max() < 8
    # rows of a batch are the files they claim to be
    rows = batch["row"].numpy()
    assert (dm.manifest.table["label"].to_numpy()[rows] == batch["label"].numpy()).all()

    written = dm.manifest.write_records(tmp_path / "run")
    split = pd.read_csv(written["split"])
    assert len(split) == 720 and set(split["split"]) == {"train", "val", "test"}
    assert split.groupby("actor")["split"].nunique().max() == 1
    assert split["path"].str.startswith("Actor_").all()  # relative to the corpus root


def test_second_run_decodes_nothing_and_n_mels_makes_a_new_entry(small_demo_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = make_dm(small_demo_root, cache)
    first.prepare_data()
    first.setup("fit")
    assert first.cache_events == ["built waveforms", "built features"]
    entries = sorted(p.name for p in cache.glob("*.npy"))
    assert len(entries) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("audio was decoded although the cache was warm")

    monkeypatch.setattr(feature_store_module, "load_waveform", no_decoding)
    extract_calls = []
    second = make_dm(small_demo_root, cache)
    original = second.features.extract
    second.features.extract = lambda x: extract_calls.append(1) or original(x)
    second.prepare_data()
    second.setup("fit")
    assert second.cache_events == ["reused waveforms", "reused features"] and extract_calls == []
    np.testing.assert_array_equal(second.arrays.features, first.arrays.features)

    third = make_dm(small_demo_root, cache, n_mels=48)
    third.prepare_data()
    assert third.cache_events == ["reused waveforms", "built features"]
    assert len(list(cache.glob("*.npy"))) == 3
    third.setup("fit")
    assert third.arrays.features.shape[2] == 48


def test_class_weights_and_train_features(small_demo_root, tmp_path):
    dm = make_dm(small_demo_root, tmp_path / "cache", split="random")
    dm.setup("fit")
    weights = dm.class_weights()
    labels = dm.manifest.table["label"].to_numpy()[dm.manifest.indices["train"]]
    counts = np.bincount(labels, minlength=8)
    np.testing.assert_allclose(weights.numpy(), len(labels) / (8 * counts), rtol=1e-6)
    assert weights[0] > weights[1]  # neutral has half as many clips
    assert dm.train_features().shape[0] == len(dm.manifest.indices["train"])


def test_waveform_training_input(small_demo_root, tmp_path):
    dm = make_dm(small_demo_root, tmp_path / "cache", train_input="waveform")
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["waveform"].shape == (16, dm.audio.num_samples)
    assert "features" in next(iter(dm.val_dataloader()))  # evaluation always reads clean cached features


def test_gathered_batches_equal_item_by_item_collation_in_sampler_order(small_demo_root, tmp_path):
    """The loader fetches whole batches in one read of the cache; they must be exactly the
    batches that reading and collating item by item gives, in the sampler's order."""
    from torch.utils.data import default_collate

    dm = make_dm(small_demo_root, tmp_path / "cache", train_input="waveform")
    dm.setup("fit")
    order = [17, 3, 100, 3, 0, 119]  # unsorted, with a repeat; within the 120 val items
    for dataset in (dm.dataset("val"), dm.dataset("train")):
        gathered = dataset.__getitems__(order)
        one_by_one = default_collate([dataset[i] for i in order])
        assert gathered.keys() == one_by_one.keys()
        for key, value in one_by_one.items():
            assert gathered[key].dtype == value.dtype and torch.equal(gathered[key], value), key
    # a transform still runs once per clip, in order, on its own copy
    seen = []
    dataset = dm.dataset("train")
    dataset.transform = lambda wave: seen.append(wave.copy()) or wave * 2.0
    batch = dataset.__getitems__(order)
    assert len(seen) == len(order)
    np.testing.assert_array_equal(batch["waveform"].numpy(), 2.0 * np.stack(seen))
    np.testing.assert_array_equal(np.stack(seen), dm.arrays.waveforms[dm.manifest.indices["train"][order]])
    # through the real loader: every training row once per epoch, labels matching the table
    rows = np.concatenate([b["row"].numpy() for b in dm.train_dataloader()])
    assert sorted(rows.tolist()) == sorted(dm.manifest.indices["train"].tolist())


def augmented_epoch(root, cache_dir, num_workers: int, epoch: int | None = None) -> dict:
    """One training epoch's batches of augmented waveforms, concatenated, keyed by row."""
    from ser_lightning.augment.waveform import build_waveform_augmentation

    augmentation = build_waveform_augmentation(
        {
            "transforms": {
                "gain": {
                    "_target_": "audiomentations.Gain",
                    "min_gain_db": -6.0,
                    "max_gain_db": 6.0,
                    "p": 0.5,
                },
                "noise": {"_target_": "audiomentations.AddGaussianNoise", "p": 0.5},
            }
        },
        16000,
    )
    dm = make_dm(root, cache_dir, num_workers=num_workers, batch_size=64, waveform_augmentation=augmentation)
    assert dm.train_input == "waveform" and dm.num_workers == num_workers
    dm.setup("fit")
    if epoch is not None:
        dm._fit_epoch = lambda: epoch  # what a trainer resumed at that epoch reports
    batches = list(dm.train_dataloader())
    rows = np.concatenate([b["row"].numpy() for b in batches])
    waves = np.concatenate([b["waveform"].numpy() for b in batches])
    return {"rows": rows, "waves": waves, "clean": dm.arrays.waveforms[rows]}


def test_augmentation_in_workers_depends_on_seed_and_epoch_not_on_workers_or_resume(
    small_demo_root, tmp_path
):
    cache = tmp_path / "cache"
    main = augmented_epoch(small_demo_root, cache, num_workers=0, epoch=3)
    workers = augmented_epoch(small_demo_root, cache, num_workers=2, epoch=3)
    np.testing.assert_array_equal(main["rows"], workers["rows"])  # the same order
    np.testing.assert_array_equal(main["waves"], workers["waves"])  # the same augmentation, clip by clip
    changed = np.any(main["waves"] != main["clean"], axis=1).mean()
    assert 0.5 < changed < 0.95  # gain or noise (p 0.5 each) touched about 3/4 of the clips
    other_epoch = augmented_epoch(small_demo_root, cache, num_workers=2, epoch=4)
    assert not np.array_equal(np.sort(other_epoch["rows"]), other_epoch["rows"])
    by_row = dict(zip(other_epoch["rows"].tolist(), other_epoch["waves"], strict=True))
    same = [np.array_equal(by_row[r], w) for r, w in zip(main["rows"].tolist(), main["waves"], strict=True)]
    assert np.mean(same) < 0.2  # a new epoch augments anew (only clips left alone both times agree)


def test_pinned_memory_follows_the_training_device(small_demo_root, tmp_path, monkeypatch):
    def on(device: str, pin_memory) -> bool:
        dm = make_dm(small_demo_root, tmp_path / "cache", pin_memory=pin_memory)
        return dm.loader.pin(torch.device(device))

    # this machine has no CUDA device: nothing is ever pinned
    assert not on("cpu", "auto") and not on("cpu", True)
    # with one (CUDA cannot run here, so only its availability is simulated)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert on("cuda:0", "auto") and not on("cpu", "auto")
    assert on("cpu", True) and not on("cuda:0", False)
    with pytest.raises(ValueError, match="data.pin_memory='yes' must be true, false or auto"):
        make_dm(small_demo_root, tmp_path / "cache", pin_memory="yes")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "speaker"}, "data.split='speaker'"),
        ({"corpus": "no_such_corpus"}, "data.corpus='no_such_corpus'"),
        ({"train_input": "audio"}, "train_input"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_config_mistakes_fail_at_construction(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_dm(tmp_path, tmp_path / "cache", **kwargs)


def test_sample_rate_mismatch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="features.sample_rate=22050 differs"):
        build_data_module(features=LogMel(sample_rate=22050), root=str(tmp_path), sample_rate=16000)
