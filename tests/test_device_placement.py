"""data.placement=device: rows held on the training device give the host path's batches, the same
metrics after a run and the same result after a resume (on the CPU here, the same code as on a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lightning_fabric.utilities.distributed import DistributedSamplerWrapper
from torch.utils.data import DataLoader

from ser_lightning.data.device_batches import DeviceBatches
from ser_lightning.data.loading import LoaderSettings
from ser_lightning.data.sampling import EpochSeededShuffle
from ser_lightning.train import build, train

from .helpers.configs import compose_train
from .helpers.corpora import TINY_RUN

RESULT_KEYS = ("test/ua", "test/acc", "test/f1", "test/loss", "val/ua_best", "val/loss")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_overrides(root: Path, placement: str, epochs: int = 3) -> list[str]:
    return [
        *TINY_RUN,
        f"data.root={root}",
        f"data.placement={placement}",
        f"trainer.max_epochs={epochs}",
        "trainer.deterministic=true",
        "seed=5",
    ]


def data_module(root: Path, placement: str, tmp_path: Path):
    datamodule = build(
        compose_train(run_overrides(root, placement), tmp_path / placement, tmp_path / "cache")
    )["datamodule"]
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def as_numpy(batch: dict) -> dict:
    return {key: torch.as_tensor(value).numpy() for key, value in batch.items()}


def test_device_batches_are_the_host_batches_in_the_same_order(tone_root, tmp_path):
    host, device = data_module(tone_root, "host", tmp_path), data_module(tone_root, "device", tmp_path)
    loaders = {
        "host": {"train": host.train_dataloader(), "val": host.val_dataloader()},
        "device": {"train": device.train_dataloader(), "val": device.val_dataloader()},
    }
    assert isinstance(loaders["host"]["train"], DataLoader)
    assert (
        isinstance(loaders["device"]["train"], DeviceBatches)
        and loaders["device"]["train"].device.type == "cpu"
    )
    for split in ("train", "val"):
        assert len(loaders["device"][split]) == len(loaders["host"][split])
    orders = []
    for _ in range(2):  # two epochs: a new order each, the same on both paths
        for split in ("train", "val"):
            batches = {}
            for path in ("host", "device"):
                batches[path] = [as_numpy(b) for b in loaders[path][split]]
                if split == "train":  # a train epoch's start reseeds the generators: what follows replays
                    batches[path].append({"after": torch.rand(3).numpy()})
            assert len(batches["host"]) == len(batches["device"])
            for from_host, from_device in zip(batches["host"], batches["device"], strict=True):
                assert from_host.keys() == from_device.keys()
                for key in from_host:
                    np.testing.assert_array_equal(from_host[key], from_device[key], err_msg=f"{split} {key}")
            if split == "train":
                orders.append(np.concatenate([b["row"] for b in batches["device"][:-1]]))
    assert not np.array_equal(orders[0], orders[1])


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_each_ddp_rank_takes_the_shard_lightning_gives_it_on_the_host_path(rank):
    size, batch = 23, 4
    order = EpochSeededShuffle(size, seed=7, num_replicas=3, rank=rank)  # it deals each rank its share
    values = torch.arange(size, dtype=torch.float32)[:, None]
    rows = torch.arange(100, 100 + size)
    device = DeviceBatches(values, rows % 8, rows, batch, order=order, num_replicas=3, rank=rank)
    # what Lightning wraps the host path's sampler in under DDP (shuffle=False: it is not a RandomSampler)
    wrapped = DistributedSamplerWrapper(
        EpochSeededShuffle(size, seed=7), num_replicas=3, rank=rank, shuffle=False
    )
    for _ in range(2):
        expected = list(wrapped)
        got = torch.cat([b["features"][:, 0] for b in device]).long().tolist()
        assert got == expected
    assert len(device) == -(-len(expected) // batch)


def test_a_run_on_device_rows_ends_with_the_host_runs_metrics(tone_root, tmp_path):
    cache = tmp_path / "cache"
    host, _ = train(compose_train(run_overrides(tone_root, "host"), tmp_path / "host", cache))
    device, objects = train(compose_train(run_overrides(tone_root, "device"), tmp_path / "device", cache))
    assert isinstance(objects["datamodule"].train_dataloader(), DeviceBatches)
    for key in RESULT_KEYS:
        assert device[key] == pytest.approx(host[key], abs=1e-6), key

    # resumed from the end of epoch 1, it ends where the uninterrupted run ended
    first = tmp_path / "resumed"
    train(compose_train(run_overrides(tone_root, "device", epochs=2), first, cache))
    resumed, _ = train(
        compose_train(
            run_overrides(tone_root, "device") + [f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}"],
            first,
            cache,
        )
    )
    for key in RESULT_KEYS:
        assert resumed[key] == pytest.approx(device[key], abs=1e-6), key


def test_auto_keeps_the_host_path_off_a_gpu_and_augmented_clips_stay_on_the_host(tone_root, tmp_path, caplog):
    caplog.set_level("INFO")
    auto = data_module(tone_root, "auto", tmp_path)
    assert isinstance(auto.train_dataloader(), DataLoader)
    assert "the training device is cpu, not a GPU" in caplog.text
    augmented = build(
        compose_train(
            run_overrides(tone_root, "device") + ["augmentation=waveform", "data.num_workers=0"],
            tmp_path / "augmented",
            tmp_path / "cache",
        )
    )["datamodule"]
    augmented.prepare_data()
    augmented.setup("fit")
    assert isinstance(augmented.train_dataloader(), DataLoader)  # augmented in the workers
    assert isinstance(augmented.val_dataloader(), DeviceBatches)  # clean clips: on the device
    assert "the train split stays on the host path" in caplog.text
    with pytest.raises(ValueError, match="data.placement='gpu' must be host, device or auto"):
        LoaderSettings(placement="gpu")
