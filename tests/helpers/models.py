"""A tiny real model, for tests that need an SERModule but no training."""

from __future__ import annotations

from pathlib import Path

from ser_lightning.utils.config import to_plain

from .configs import compose_train

# A few-thousand-parameter ACNT for tests that need a real module but no training.
TINY_NET = [
    "model.net.cnn_channels=[4,8]",
    "model.net.transformer_dim=16",
    "model.net.num_heads=2",
    "model.net.ff_dim=32",
    "model.net.num_layers=1",
]


# A few batches of a small ACNT through the real configs (debug=limit): a trained checkpoint in
# seconds, for the tests that score one (inference, serving).
TINY_TRAINING = [
    "debug=limit",
    "trainer.detect_anomaly=false",
    "model.net.cnn_channels=[8,16,32]",
    "model.net.transformer_dim=32",
    "model.net.ff_dim=64",
    "model.net.num_layers=1",
    "print_config=false",
]


def module_from_config(overrides: list[str], duration: float, run_dir: Path = Path("/tmp/unused")):
    """An untrained SERModule built from the real train config with `overrides`, as train builds
    it (8 emotions, clips of `duration` seconds), in eval mode."""
    from hydra.utils import instantiate

    from ser_lightning.audio_settings import AudioSettings
    from ser_lightning.labels import EMOTIONS

    cfg = compose_train(overrides, run_dir)
    return instantiate(
        cfg.model,
        features=to_plain(cfg.features),
        audio=AudioSettings(duration=duration).to_dict(),
        labels=list(EMOTIONS),
        _recursive_=False,
    ).eval()


def tiny_module():
    """An untrained SERModule of TINY_NET on the default log-mel features (1 s clips)."""
    return module_from_config(TINY_NET, duration=1.0)
