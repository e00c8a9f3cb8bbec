"""Composing the real Hydra configs the way the entry point does, for tests."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ser_lightning.utils.config import CONFIG_DIR


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
