"""Checkpoints: the stored contract, loading them back, and refusing files that would run code."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from ser_lightning.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    RECORD_KEY,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
)
from ser_lightning.data.audio import AudioSettings
from ser_lightning.labels import EMOTIONS
from ser_lightning.module import SERModule
from ser_lightning.utils.config import to_plain

from .helpers import compose_train

TINY_NET = [
    "model.net.cnn_channels=[4,8]",
    "model.net.transformer_dim=16",
    "model.net.num_heads=2",
    "model.net.ff_dim=32",
    "model.net.num_layers=1",
]


@pytest.fixture(scope="module")
def module() -> SERModule:
    cfg = compose_train(TINY_NET, Path("/tmp/unused"))
    torch.manual_seed(0)
    return instantiate(
        cfg.model,
        features=to_plain(cfg.features),
        audio=AudioSettings(duration=1.0).to_dict(),
        labels=list(EMOTIONS),
        _recursive_=False,
    ).eval()


def save(module: SERModule, path: Path, **changes) -> Path:
    """A checkpoint laid out as Lightning writes it, with the ser_lightning record."""
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        RECORD_KEY: {"format_version": CHECKPOINT_FORMAT_VERSION, "data": None, "split": None},
    }
    checkpoint.update(changes)
    torch.save(checkpoint, path)
    return path


def with_hparam(module: SERModule, key: str, value) -> dict:
    hparams = dict(module.hparams)
    hparams[key] = value
    return hparams


def test_a_checkpoint_rebuilds_the_same_model(module, tmp_path):
    path = save(module, tmp_path / "model.ckpt")
    loaded = load_checkpoint(path)
    assert isinstance(loaded, SERModule) and not loaded.training
    assert loaded.labels == list(EMOTIONS) and loaded.audio == module.audio
    waves = torch.randn(3, module.audio.num_samples)
    with torch.inference_mode():
        expected = module(module.inputs({"waveform": waves}))
        assert torch.equal(loaded(loaded.inputs({"waveform": waves})), expected)
        # Lightning's own entry point goes through the same safe loader
        via_lightning = SERModule.load_from_checkpoint(path)
        assert torch.equal(via_lightning(via_lightning.inputs({"waveform": waves})), expected)


def test_weights_of_a_compiled_network_load(module, tmp_path):
    state = {k.replace("net.", "net._orig_mod.", 1): v for k, v in module.state_dict().items()}
    path = save(
        module,
        tmp_path / "compiled.ckpt",
        state_dict=state,
        hyper_parameters=with_hparam(module, "compile", True),
    )
    loaded = load_checkpoint(path)
    assert not hasattr(loaded.net, "_orig_mod")
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded.state_dict().values(), module.state_dict().values(), strict=True)
    )


class Payload:
    """Unpickling this calls Path.touch(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_payload_in_a_checkpoint_does_not_run(module, tmp_path):
    marker = tmp_path / "payload_ran"
    path = save(module, tmp_path / "evil.ckpt", payload=Payload(marker))
    # the payload is live: unsafe loading runs it
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError, match=r"evil\.ckpt.*refused by safe loading"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "role,target",
    [
        ("features", "os.makedirs"),  # a function outside the project
        ("features", "ser_lightning.data.demo.os.makedirs"),  # a trusted prefix walking to os
        ("net", "subprocess.Popen"),  # a class outside the trusted packages
        ("net", "ser_lightning.data.datamodule.SERDataModule"),  # a project class of the wrong kind
    ],
)
def test_config_targets_that_would_run_code_are_refused(module, tmp_path, role, target):
    marker = tmp_path / "made_by_target"
    config = {"_target_": target, "name": str(marker)}
    if target == "os.makedirs":  # the config is live: Hydra would run it
        instantiate(config)
        assert marker.exists()
        marker.rmdir()
    path = save(module, tmp_path / "target.ckpt", hyper_parameters=with_hparam(module, role, config))
    with pytest.raises(CheckpointError, match=rf"{role}\._target_=.*is refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_nested_targets_are_checked_too(module, tmp_path):
    net = dict(module.hparams["net"], helper={"_target_": "os.makedirs", "name": str(tmp_path / "x")})
    path = save(module, tmp_path / "nested.ckpt", hyper_parameters=with_hparam(module, "net", net))
    with pytest.raises(CheckpointError, match=r"net\.helper\._target_='os.makedirs' is refused"):
        load_checkpoint(path)


def test_files_that_are_not_ser_lightning_checkpoints_get_clear_errors(module, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nowhere.ckpt")
    text = tmp_path / "notes.ckpt"
    text.write_text("just text")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(text)
    torch.save(module.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        read_checkpoint(tmp_path / "weights.pt")
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"lr": 0.1}}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not a ser_lightning checkpoint.*lack"):
        read_checkpoint(tmp_path / "other.ckpt")
    newer = save(
        module, tmp_path / "newer.ckpt", **{RECORD_KEY: {"format_version": CHECKPOINT_FORMAT_VERSION + 1}}
    )
    with pytest.raises(CheckpointError, match="Update ser_lightning"):
        read_checkpoint(newer)


class FailsWhilePickled:
    """Stands for a write that dies halfway: pickling it raises after earlier bytes went out."""

    def __reduce__(self):
        raise OSError("No space left on device")


def test_an_interrupted_checkpoint_write_keeps_the_previous_file(tmp_path):
    from ser_lightning.checkpoint import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "weights": torch.arange(1000.0)}, path)
    before = path.read_bytes()
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"epoch": 2, "weights": torch.arange(1000.0), "extra": FailsWhilePickled()}, path)
    assert path.read_bytes() == before  # the complete epoch-1 file, not a truncated epoch-2 one
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no staging file left
    assert torch.load(path, weights_only=True)["epoch"] == 1
    io.save_checkpoint({"epoch": 3}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 3}
