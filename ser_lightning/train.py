"""Train, validate and test a speech emotion model: `python -m ser_lightning.train [overrides]`.

Composes the Hydra config, builds features, data module, model, callbacks, loggers and
trainer from it, checks the split for leakage (ser_lightning.data.leakage), fits, fits the
temperature of the best checkpoint on the validation split (`calibration=temperature`, the
default; `calibration=none` leaves it out), tests the best checkpoint and prints a short
summary. Returns the value of `optimized_metric` so that Hydra sweepers can optimise it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only

from ser_lightning.checkpoint_calibration import calibrate_checkpoint
from ser_lightning.checkpoint_writing import AtomicCheckpointIO, CheckpointRecord
from ser_lightning.data import augmentation as augmentation_nodes
from ser_lightning.data.corpora import check_data_root
from ser_lightning.data.leakage import check_leakage
from ser_lightning.data.quality import UnusableFilesError, write_rejected
from ser_lightning.reporting.collector import ReportCollector, test_best_checkpoint
from ser_lightning.reporting.summary import print_run_summary, run_summary
from ser_lightning.reporting.wandb_logging import finish_wandb, prepare_wandb_config, sweep_name
from ser_lightning.resume import ResumedCheckpoint, checkpoint_to_resume, record_or_check_run_config
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
    pin_ddp_children_to_this_job,
)

log = logging.getLogger("ser_lightning.train")

silence_pytree_notice()


def build(cfg: DictConfig) -> dict[str, Any]:
    """Instantiate everything a run needs from the composed config, failing before any work.

    Any error here means the run cannot start (an impossible model × features pair, a config
    mistake): it is raised as StartupError, which a sweep records as "skipped".
    """
    try:
        return _build(cfg)
    except Exception as err:
        cause = root_cause(err)
        raise StartupError(f"{type(cause).__name__}: {cause}") from err


def _build(cfg: DictConfig) -> dict[str, Any]:
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
    callbacks = instantiate_dict(cfg.get("callbacks"), "callbacks") + [
        CheckpointRecord(data),
        ReportCollector(),
    ]
    loggers = instantiate_dict(cfg.get("logger"), "logger")
    # best.ckpt / last.ckpt are written beside themselves and renamed into place (kill-safe)
    plugins = {} if cfg.trainer.get("plugins") else {"plugins": [AtomicCheckpointIO()]}
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **plugins)
    return {"features": features, "datamodule": datamodule, "model": model, "trainer": trainer}


def _task_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit and test; returns (metrics, objects)."""
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Before any work: the checkpoint to resume must exist and belong to this experiment.
    ckpt_path = checkpoint_to_resume(cfg, output_dir)
    if rank_zero_only.rank == 0:
        record_or_check_run_config(cfg, output_dir, _task_overrides(), ckpt_path)
    resumed = ResumedCheckpoint.read(ckpt_path) if ckpt_path else None
    if resumed:
        resumed.check_data(to_plain(cfg.data))
    check_data_root(cfg.data)
    if cfg.get("print_config") and rank_zero_only.rank == 0:
        print_config_tree(cfg, save_to=output_dir / "config_tree.txt")
    pl.seed_everything(cfg.seed, workers=True)

    objects = build(cfg)
    datamodule, model, trainer = objects["datamodule"], objects["model"], objects["trainer"]
    if resumed:
        resumed.check_model(model.hparams)
    log.info(
        "model %s on features %s: input %s",
        type(model.model.net).__name__,
        type(model.model.features).__name__,
        model.model.input_shape,
    )

    try:
        datamodule.prepare_data()
        datamodule.setup("fit")
    except UnusableFilesError as err:
        listed = write_rejected(err.rejected, output_dir)
        raise UnusableFilesError(f"{err}\nAll of them, with reasons: {listed}", err.rejected) from None
    if resumed:
        resumed.check_split(datamodule)
    if rank_zero_only.rank == 0:
        datamodule.manifest.write_records(output_dir)
    # Before any training: no speaker (speaker-independent protocols) and no recording in two splits.
    leakage = check_leakage(datamodule.manifest, datamodule.arrays.waveforms)
    for experiment_logger in trainer.loggers:
        experiment_logger.log_hyperparams(
            {
                **{key: to_plain(cfg[key]) for key in cfg if key != "hydra"},
                "protocol": datamodule.manifest.protocol(),
            }
        )

    if cfg.get("train"):
        # weights_only: a checkpoint holds tensors and plain containers only, so nothing in it runs code.
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    best_ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    calibration = None
    if cfg.get("train") and best_ckpt:
        calibration = calibrate_checkpoint(
            best_ckpt, datamodule, model, str(cfg.get("calibration", "temperature")), trainer.is_global_zero
        )
    report = None
    if cfg.get("test"):
        report = test_best_checkpoint(trainer, model, datamodule, best_ckpt, output_dir)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})

    summary = run_summary(
        datamodule,
        metrics,
        report,
        best_ckpt,
        output_dir,
        leakage,
        calibration,
        time.perf_counter() - started,
    )
    if trainer.is_global_zero:
        print_run_summary(summary, save_to=output_dir / "summary.json")
    objects["summary"] = summary
    return metrics, objects


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The metric a sweeper optimises; a clear error when the name is not among the metrics."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} was not logged; logged metrics: {sorted(metrics)}")
    return metrics[name]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
@exits_on_user_mistake
def main(cfg: DictConfig) -> float | None:
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
