"""Train, validate and test a speech emotion model: `python -m ser_lightning.train [overrides]`.

Composes the Hydra config, builds features, data module, model, callbacks, loggers and
trainer from it, checks the split for leakage (ser_lightning.data.leakage), fits, fits the
temperature of the best checkpoint on the validation split (`calibration=temperature`, the
default; `calibration=conformal` adds prediction sets, `calibration=none` leaves it out), tests
the best checkpoint and prints a short summary. Returns the value of `optimized_metric` so that
Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from ser_lightning.checkpoint_calibration import calibration_settings
from ser_lightning.checkpoint_writing import CheckpointRecord, checkpoint_plugins
from ser_lightning.data import augmentation as augmentation_nodes
from ser_lightning.data.corpora import check_data_root
from ser_lightning.data.run_data import prepare_for_training
from ser_lightning.reporting.collector import ReportCollector
from ser_lightning.reporting.summary import finish_run
from ser_lightning.reporting.wandb_logging import finish_wandb, prepare_wandb_config, sweep_name
from ser_lightning.resume import check_resume
from ser_lightning.utils.config import (
    CONFIG_DIR,
    instantiate_dict,
    print_config_tree,
    silence_pytree_notice,
    to_plain,
)
from ser_lightning.utils.errors import exits_on_user_mistake, root_cause
from ser_lightning.utils.jobs import (
    StartupError,
    distributed_job_scope,
    job_record,
    metric_value,
    pin_ddp_children_to_this_job,
)
from ser_lightning.utils.loggers import log_run_config

log = logging.getLogger("ser_lightning.train")

silence_pytree_notice()


def build(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate everything a run needs from the composed config, failing before any work.

    Args:
        cfg: The composed train config.

    Returns:
        The run's `features`, `datamodule`, `model` and `trainer`.

    Raises:
        StartupError: Any error here: the run cannot start (an impossible model × features pair,
            a config mistake); a sweep records it as "skipped".
    """
    try:
        prepare_wandb_config(cfg, sweep_name())
        # One feature extractor per run: the data module caches with it, the model normalises and
        # (for waveform batches) computes with it.
        features = instantiate(cfg.features)
        # The augmentation group splits by where it runs: waveform transforms or offline copies on
        # the train split (data module), SpecAugment and mixup on the device (LightningModule).
        augmentation = cfg.get("augmentation")
        data = to_plain(cfg.data)
        datamodule = instantiate(
            data, features=features, **augmentation_nodes.for_data_module(augmentation, data["sample_rate"])
        )
        model = instantiate(
            cfg.model,
            features=to_plain(cfg.features),
            feature_extractor=features,
            audio=datamodule.audio.to_dict(),
            labels=list(datamodule.label_names),
            **augmentation_nodes.for_lightning_module(augmentation),
            _recursive_=False,
        )
        # The checkpoint record is part of the checkpoint format, so it is not left to the config.
        required = [CheckpointRecord(data), ReportCollector()]
        callbacks = instantiate_dict(cfg.get("callbacks"), "callbacks") + required
        loggers = instantiate_dict(cfg.get("logger"), "logger")
        plugins = checkpoint_plugins(cfg.trainer)
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **plugins)
        return {"features": features, "datamodule": datamodule, "model": model, "trainer": trainer}
    except Exception as err:
        cause = root_cause(err)
        raise StartupError(f"{type(cause).__name__}: {cause}") from err


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit, calibrate and test as the config says, and print the run summary.

    Args:
        cfg: The composed train config.

    Returns:
        The logged metrics, and the run's objects: those of `build`, and its `summary`.
    """
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, resumed = check_resume(cfg, output_dir, rank_zero_only.rank == 0)
    check_data_root(cfg.data)
    calibration_settings(cfg.get("calibration", "temperature"))  # a wrong method stops before training
    if cfg.get("print_config") and rank_zero_only.rank == 0:
        print_config_tree(cfg, save_to=output_dir / "config_tree.txt")
    pl.seed_everything(cfg.seed, workers=True)

    objects = build(cfg)
    datamodule, model, trainer = objects["datamodule"], objects["model"], objects["trainer"]
    if resumed:
        resumed.check_model(model.hparams)
    net, features = type(model.model.net).__name__, type(model.model.features).__name__
    log.info("model %s on features %s: input %s", net, features, model.model.input_shape)
    check_split = resumed.check_split if resumed else None
    leakage = prepare_for_training(datamodule, output_dir, rank_zero_only.rank == 0, check_split)
    log_run_config(trainer.loggers, cfg, datamodule.manifest.protocol())

    if cfg.get("train"):
        # weights_only: a checkpoint holds tensors and plain containers only, so nothing in it runs code.
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics, objects["summary"] = finish_run(trainer, model, datamodule, output_dir, leakage, started, cfg)
    return metrics, objects


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
@exits_on_user_mistake
def main(cfg: DictConfig) -> float | None:
    """Run `train` as the Hydra entry point, recording the job's outcome.

    Returns:
        The value of `optimized_metric`, which a Hydra sweeper optimises (None without one).
    """
    OmegaConf.resolve(cfg.paths)
    with job_record(cfg.paths.output_dir, is_rank_zero=rank_zero_only.rank == 0) as job:
        pin_ddp_children_to_this_job()
        try:
            with distributed_job_scope():
                metrics, _ = train(cfg)
        finally:
            finish_wandb()
        job["result"] = metric_value(metrics, cfg.get("optimized_metric"))
    return job["result"]


if __name__ == "__main__":
    main()
