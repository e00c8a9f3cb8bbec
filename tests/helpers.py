"""Composing the real Hydra configs the way the entry point does, for tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ser_lightning.utils.config import CONFIG_DIR, to_plain

from .conftest import SMALL_DEMO


def small_demo_overrides(root: Path) -> list[str]:
    """Point data=demo at the session's small corpus (same spec, so it is not regenerated)."""
    return [
        "data=demo",
        f"data.root={root}",
        f"data.demo.num_actors={SMALL_DEMO['num_actors']}",
        f"data.demo.duration={SMALL_DEMO['duration']}",
        f"data.duration={SMALL_DEMO['duration']}",
    ]


def compose_train(
    overrides: list[str], run_dir: Path, cache_dir: Path | None = None, config_name: str = "train"
) -> DictConfig:
    """Compose conf/<config_name>.yaml with overrides; outputs under run_dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.paths.root_dir = str(run_dir)
        cfg.paths.output_dir = str(run_dir)
        if cache_dir is not None:
            cfg.paths.cache_dir = str(cache_dir)
    HydraConfig().set_config(cfg)
    return cfg


# A few-thousand-parameter ACNT for tests that need a real module but no training.
TINY_NET = [
    "model.net.cnn_channels=[4,8]",
    "model.net.transformer_dim=16",
    "model.net.num_heads=2",
    "model.net.ff_dim=32",
    "model.net.num_layers=1",
]


def tiny_module():
    """An untrained SERModule of TINY_NET on the default log-mel features (1 s clips, 8 emotions),
    built from the real configs as train builds it, in eval mode."""
    from hydra.utils import instantiate

    from ser_lightning.data.audio import AudioSettings
    from ser_lightning.labels import EMOTIONS

    cfg = compose_train(TINY_NET, Path("/tmp/unused"))
    return instantiate(
        cfg.model,
        features=to_plain(cfg.features),
        audio=AudioSettings(duration=1.0).to_dict(),
        labels=list(EMOTIONS),
        _recursive_=False,
    ).eval()
