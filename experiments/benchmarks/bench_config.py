"""What the benchmark scripts share: composing the real `train` config for a timing run.

A timing run trains only: no validation, no checkpoints, callbacks, loggers, progress bar or
model summary, and no learning-rate scheduler (a plateau scheduler would have no validation
metric to watch; none costs anything per batch). `run_dir` receives what the run writes.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from ser_lightning.utils.config import CONFIG_DIR

TRAINING_ONLY = [
    "++trainer.limit_val_batches=0",
    "++trainer.num_sanity_val_steps=0",
    "++trainer.enable_checkpointing=false",
    "++trainer.enable_progress_bar=false",
    "++trainer.enable_model_summary=false",
    "callbacks=none",
    "logger=none",
    "model.scheduler=null",
    "print_config=false",
]


def timing_config(overrides: list[str], run_dir: str | Path, training_only: bool = True) -> DictConfig:
    """The composed `train` config with `overrides` (after TRAINING_ONLY when training_only), its
    outputs in run_dir, and Hydra's runtime set so that `ser_lightning.train.build` runs."""
    run_dir = str(run_dir)
    overrides = [*(TRAINING_ONLY if training_only else []), *overrides]
    overrides += [f"paths.output_dir={run_dir}", f"paths.log_dir={run_dir}"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = run_dir
    HydraConfig().set_config(cfg)
    return cfg


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), for the reports."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def training_module(cfg: DictConfig):
    """The SERModule of a composed train config, as train builds it (the 8 emotions, the
    config's audio settings and features)."""
    from hydra.utils import instantiate

    from ser_lightning.audio_settings import AudioSettings
    from ser_lightning.labels import EMOTIONS
    from ser_lightning.utils.config import to_plain

    audio = AudioSettings(sample_rate=cfg.data.sample_rate, duration=cfg.data.duration)
    return instantiate(
        cfg.model,
        features=to_plain(cfg.features),
        audio=audio.to_dict(),
        labels=list(EMOTIONS),
        _recursive_=False,
    )
