"""Augmentation in the data module and in real training runs on the small demo corpus:
train split only, reproducible through DataLoader workers, offline copies cached once."""

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from ser_lightning.augment.waveform import build_waveform_augmentation
from ser_lightning.data.augmentation import check_augmentation, for_data_module
from ser_lightning.data.datamodule import SERDataModule, build_data_module
from ser_lightning.data.loading import available_cores
from ser_lightning.data.offline_copies import OfflineCopies
from ser_lightning.features import LogMel
from ser_lightning.train import build, train
from ser_lightning.utils.config import CONFIG_DIR

from .helpers.configs import compose_train
from .helpers.corpora import SMALL_DEMO, small_demo_overrides
from .helpers.runs import assert_complete_test_result

PRESETS = sorted(p.stem for p in (CONFIG_DIR / "augmentation").glob("*.yaml"))
WAVEFORM_PRESET = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "augmentation" / "waveform.yaml"))[
    "augmentation"
]
# cheap transforms (no pitch/stretch) for the mechanism tests; the presets are run below
CHEAP_WAVEFORM = {
    "transforms": {
        "gain": {
            "_target_": "audiomentations.Gain",
            "min_gain_db": -6.0,
            "max_gain_db": 6.0,
            "p": 1.0,
        },
        "shift": {
            "_target_": "audiomentations.Shift",
            "min_shift": -0.2,
            "max_shift": 0.2,
            "shift_unit": "seconds",
            "rollover": False,
            "p": 0.5,
        },
        "noise": {
            "_target_": "audiomentations.AddGaussianNoise",
            "min_amplitude": 0.001,
            "max_amplitude": 0.015,
            "p": 1.0,
        },
    }
}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("augment_cache")


def make_dm(root, cache_dir, features=None, augmentation=None, **kwargs) -> SERDataModule:
    """The data module as a run builds it: the augmentation node reaches its constructor."""
    return build_data_module(
        features=features or LogMel(sample_rate=16000, n_mels=32),
        root=str(root),
        demo=SMALL_DEMO,
        duration=SMALL_DEMO["duration"],
        cache_dir=str(cache_dir),
        **{"batch_size": 16, **for_data_module(augmentation, 16000), **kwargs},
    )


class CacheOnlyLogMel(LogMel):
    """Log-mel declared CPU-only: stands in for handcrafted68-like extractors (always cached)."""

    runs_on_device = False


# ------------------------------------------------------------------ data module
def test_waveform_augmentation_reaches_only_the_train_split(small_demo_root, cache_dir):
    dm = make_dm(small_demo_root, cache_dir, augmentation={"waveform": WAVEFORM_PRESET["waveform"]})
    # the constructor alone sets the data module up for on-the-fly augmentation
    assert dm.train_input == "waveform" and dm.offline_copies is None
    assert dm.waveform_augmentation.names == list(WAVEFORM_PRESET["waveform"]["transforms"])
    dm.setup("fit")
    assert dm.dataset("train").transform is dm.waveform_augmentation
    assert dm.dataset("val").transform is None and dm.dataset("test").transform is None
    batch = next(iter(dm.train_dataloader()))
    clean = torch.from_numpy(np.array(dm.arrays.waveforms[batch["row"].numpy()]))
    assert batch["waveform"].shape == clean.shape
    changed = (batch["waveform"] - clean).abs().amax(dim=1) > 1e-4
    assert changed.float().mean() >= 0.75  # 7 transforms at p 0.3-0.5: few clips escape them all
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        batch = next(iter(loader))
        assert "waveform" not in batch
        np.testing.assert_array_equal(batch["features"].numpy(), dm.arrays.features[batch["row"].numpy()])


def first_train_batch(dm: SERDataModule, seed: int) -> dict:
    pl.seed_everything(seed, workers=True)
    return next(iter(dm.train_dataloader()))


def test_same_seed_gives_the_same_augmented_batch_through_workers(small_demo_root, cache_dir):
    def augmenting_dm(shuffle_seed: int) -> SERDataModule:
        # two workers even on a 2-core machine (where auto leaves one)
        dm = make_dm(
            small_demo_root,
            cache_dir,
            augmentation={"waveform": WAVEFORM_PRESET["waveform"]},
            batch_size=8,
            num_workers=2,
            shuffle_seed=shuffle_seed,
        )
        dm.setup("fit")
        return dm

    dm = augmenting_dm(0)
    assert dm.num_workers == 2
    first, again = first_train_batch(dm, 7), first_train_batch(dm, 7)
    assert torch.equal(first["row"], again["row"]) and torch.equal(first["waveform"], again["waveform"])
    # the order is drawn from data.shuffle_seed (the run's seed by default) and the epoch
    other = first_train_batch(augmenting_dm(1), 8)
    assert not torch.equal(first["row"], other["row"])
    # the same clip under another seed is augmented differently
    dataset = dm.dataset("train")
    pl.seed_everything(7)
    seven = dataset[0]["waveform"]
    pl.seed_everything(8)
    assert not torch.equal(seven, dataset[0]["waveform"])


def test_auto_workers_are_the_spare_cores_when_augmenting_and_a_number_is_honoured(
    small_demo_root, cache_dir
):
    augmenting = make_dm(small_demo_root, cache_dir, augmentation={"waveform": CHEAP_WAVEFORM})
    assert augmenting.loader.num_workers == "auto"
    assert augmenting.num_workers == max(1, available_cores() - 1)
    assert make_dm(small_demo_root, cache_dir).num_workers == 0  # cached rows: read in-process
    explicit = make_dm(small_demo_root, cache_dir, augmentation={"waveform": CHEAP_WAVEFORM}, num_workers=64)
    assert explicit.num_workers == 64


def test_cpu_only_features_need_offline_copies(small_demo_root, cache_dir):
    with pytest.raises(
        ValueError, match="CacheOnlyLogMel is computed once on CPU.*augmentation.offline_copies=K"
    ):
        make_dm(
            small_demo_root,
            cache_dir,
            features=CacheOnlyLogMel(sample_rate=16000, n_mels=32),
            augmentation={"waveform": CHEAP_WAVEFORM},
        )
    with pytest.raises(ValueError, match="data.train_input=waveform trains on raw audio"):
        make_dm(
            small_demo_root,
            cache_dir,
            train_input="waveform",
            augmentation={"waveform": CHEAP_WAVEFORM, "offline_copies": 1},
        )


def test_offline_copies_are_cached_once_as_extra_train_rows(small_demo_root, cache_dir):
    node = {"waveform": CHEAP_WAVEFORM, "offline_copies": 2, "offline_seed": 11}

    def offline_dm(copies: int, workers: int | None = None) -> SERDataModule:
        features = CacheOnlyLogMel(sample_rate=16000, n_mels=32)
        if workers is None:  # as a run builds them
            dm = make_dm(
                small_demo_root, cache_dir, features=features, augmentation={**node, "offline_copies": copies}
            )
        else:
            augmentation = build_waveform_augmentation(CHEAP_WAVEFORM, 16000)
            offline = OfflineCopies(
                augmentation, copies, node["offline_seed"], CHEAP_WAVEFORM, workers=workers
            )
            dm = make_dm(small_demo_root, cache_dir, features=features, offline_copies=offline)
        dm.setup("fit")
        return dm

    dm = offline_dm(2)
    assert dm.cache_events[-1] == "built augmented copies" and dm.train_input == "features"
    train_rows = np.sort(dm.manifest.indices["train"])
    assert len(dm.dataset("train")) == 3 * len(train_rows)
    assert len(dm.dataset("val")) == len(dm.manifest.indices["val"])  # nothing added outside train
    copies = dm.train_copies
    labels = dm.manifest.labels
    for i in (0, 1, 2, 3, len(copies) - 1):
        item = copies[i]
        source = train_rows[i // 2]
        assert item["row"] == source and item["label"] == labels[source]
        clean = dm.arrays.features[source]
        assert item["features"].shape == clean.shape and not np.allclose(item["features"].numpy(), clean)
    assert not np.array_equal(copies[0]["features"], copies[1]["features"])  # two different copies
    batch = next(iter(dm.train_dataloader()))
    assert batch["features"].shape[1:] == clean.shape

    assert offline_dm(2).cache_events[-1] == "reused augmented copies"  # a second run reuses them

    # another K is another entry; its bytes do not depend on the number of build workers
    one = offline_dm(1)
    assert one.cache_events[-1] == "built augmented copies" and len(one.train_copies) == len(train_rows)
    built_in_workers = np.array(one.train_copies.array)
    entry = Path(one.train_copies.array.filename)
    entry.unlink()
    serial = offline_dm(1, workers=0)
    assert (
        serial.cache_events[-1] == "built augmented copies"
        and Path(serial.train_copies.array.filename) == entry
    )
    np.testing.assert_array_equal(np.array(serial.train_copies.array), built_in_workers)


# ------------------------------------------------------------------ training runs
class BatchRecorder(pl.Callback):
    """Records, per stage, each batch and what the network received for it."""

    def __init__(self, model):
        self.records: list[dict] = []
        model.model.net.register_forward_pre_hook(self._network_input)
        self._stage = None

    def _start(self, trainer, batch):
        self.records.append(
            {"stage": trainer.state.stage.value, "batch": {k: v.clone() for k, v in batch.items()}}
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start(trainer, batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._start(trainer, batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._start(trainer, batch)

    def _network_input(self, module, args):
        self.records[-1]["input"] = args[0].detach().clone()


def recorded_run(root, run_dir, cache_dir, seed: int) -> tuple[list[dict], SERDataModule, torch.nn.Module]:
    cfg = compose_train(
        small_demo_overrides(root)
        + [
            "augmentation=full",
            f"seed={seed}",
            "data.num_workers=2",
            "data.batch_size=8",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1",
            "+trainer.limit_test_batches=1",
            "+trainer.num_sanity_val_steps=0",
            "print_config=false",
        ],
        run_dir,
        cache_dir,
    )
    pl.seed_everything(cfg.seed, workers=True)
    objects = build(cfg)
    model, dm, trainer = objects["model"], objects["datamodule"], objects["trainer"]
    recorder = BatchRecorder(model)
    trainer.callbacks.append(recorder)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, weights_only=True)
    return recorder.records, dm, model


@pytest.mark.slow  # 15-35 s on 2 cores: in the slow set, which CI runs, to keep the default suite near 10 min
def test_training_run_augments_only_training_batches_and_repeats_with_the_seed(
    small_demo_root, tmp_path, cache_dir
):
    first, dm, model = recorded_run(small_demo_root, tmp_path / "a", cache_dir, seed=3)
    again, _, _ = recorded_run(small_demo_root, tmp_path / "b", cache_dir, seed=3)
    assert [r["stage"] for r in first] == ["train", "train", "validate", "test"]

    for record in first:
        rows = record["batch"]["row"].numpy()
        if record["stage"] == "train":  # augmented audio in, masked and mixed features to the network
            clean = torch.from_numpy(np.array(dm.arrays.waveforms[rows]))
            assert not torch.equal(record["batch"]["waveform"], clean)
            assert not torch.equal(record["input"], model.model.features(clean))
        else:  # the clean cached features, only normalised
            np.testing.assert_array_equal(record["batch"]["features"].numpy(), dm.arrays.features[rows])
            torch.testing.assert_close(
                record["input"],
                model.model.features.normalize(record["batch"]["features"]),
                rtol=0,
                atol=0,
            )

    # same seed: the same clips, the same augmented audio (DataLoader workers), the same masks and mixes
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a["batch"]["row"], b["batch"]["row"])
        assert torch.equal(a["input"], b["input"])


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_builds(small_demo_root, tmp_path, preset):
    cfg = compose_train(small_demo_overrides(small_demo_root) + [f"augmentation={preset}"], tmp_path)
    objects = build(cfg)
    model, dm = objects["model"], objects["datamodule"]
    augmentation = check_augmentation(cfg.augmentation)
    assert set(augmentation) == {"waveform", "offline_copies", "offline_seed", "spectrogram", "mixup"}
    # the device-side parts are the model's hyper-parameters, as plain `_target_` nodes
    for key in ("spectrogram", "mixup"):
        stored = model.hparams[key]
        assert stored == augmentation[key] and (stored is None or type(stored) is dict)
    assert "augmentation" not in model.hparams
    on_the_fly = bool(augmentation["waveform"]) and not augmentation["offline_copies"]
    assert (dm.train_input == "waveform") == on_the_fly == (dm.waveform_augmentation is not None)
    assert (dm.offline_copies is not None) == bool(augmentation["offline_copies"])
    if on_the_fly:
        assert dm.num_workers > 0  # the transforms run in worker processes
    assert (model.batch_augmentation.spectrogram is not None) == bool(augmentation["spectrogram"])
    assert (model.batch_augmentation.mixup is not None) == bool(augmentation["mixup"])


# By default one preset runs through train(): seed004, the offline-copies path (the on-the-fly
# path of `full` already trains above); every preset runs with `-m slow`.
FAST_DEV_RUN_PRESETS = [p if p == "seed004" else pytest.param(p, marks=pytest.mark.slow) for p in PRESETS]


@pytest.mark.parametrize("preset", FAST_DEV_RUN_PRESETS)
def test_preset_passes_fast_dev_run(small_demo_root, tmp_path, cache_dir, preset):
    cfg = compose_train(
        small_demo_overrides(small_demo_root) + [f"augmentation={preset}", "debug=fdr", "print_config=false"],
        tmp_path,
        cache_dir,
    )
    metrics, objects = train(cfg)
    assert_complete_test_result(tmp_path, metrics)
    dm, augmentation = objects["datamodule"], check_augmentation(cfg.augmentation)
    assert len(dm.dataset("train")) == (1 + augmentation["offline_copies"]) * len(
        dm.manifest.indices["train"]
    )
