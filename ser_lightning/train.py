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
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader

from ser_lightning.calibration import CALIBRATION_METHODS, fit_temperature
from ser_lightning.checkpoint import CHECKPOINT_TEMPORARY_TEMPLATE, read_checkpoint
from ser_lightning.checkpoint_writing import AtomicCheckpointIO, CheckpointRecord
from ser_lightning.data import augmentation as augmentation_nodes
from ser_lightning.data.corpora import CORPORA, build_corpus
from ser_lightning.data.leakage import check_leakage, speaker_note
from ser_lightning.data.loading import collate_batch
from ser_lightning.data.quality import UnusableFilesError, skip_counts, write_rejected
from ser_lightning.reporting.collector import ReportCollector
from ser_lightning.reporting.evaluation import print_report, write_report
from ser_lightning.reporting.summary import print_run_summary, test_results
from ser_lightning.reporting.wandb_logging import finish_wandb, prepare_wandb_config, sweep_name
from ser_lightning.resume import ResumedCheckpoint, checkpoint_to_resume, record_or_check_run_config
from ser_lightning.utils.config import (
    CONFIG_DIR,
    instantiate_dict,
    print_config_tree,
    silence_pytree_notice,
    to_plain,
)
from ser_lightning.utils.errors import InvalidSetting, exits_on_user_mistake, root_cause
from ser_lightning.utils.files import atomic_write
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


def check_data_root(data: DictConfig) -> None:
    """A corpus folder that is not there stops the run before anything is built or printed.

    The corpus parser says so in its own words (what the folder should hold, where to get it);
    data=demo generates its folder, and configs the data module refuses are left to it.
    """
    root, corpus_name = data.get("root"), data.get("corpus")
    if data.get("demo") or not root or Path(str(root)).expanduser().is_dir() or corpus_name not in CORPORA:
        return
    options = to_plain(data.get("corpus_options"))
    corpus = build_corpus(corpus_name, str(root), data.get("vocal_channels", ["speech"]), options)
    corpus.scan()  # raises FileNotFoundError naming the folder


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
    protocol = datamodule.manifest.protocol()
    for experiment_logger in trainer.loggers:
        experiment_logger.log_hyperparams(
            {**{key: to_plain(cfg[key]) for key in cfg if key != "hydra"}, "protocol": protocol}
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
        ckpt = best_ckpt or None
        if ckpt is None:
            log.warning("no best checkpoint was saved; testing the current weights")
        trainer.test(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True if ckpt else None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        # the report the logged test metrics came from: the test batches trainer.test ran
        report = ReportCollector.of(trainer).report
        if report is None:
            log.warning("the test stage scored no files; no test report is written")
        elif trainer.is_global_zero:
            title = f"Test report: the test split ({datamodule.splitter.name}) of {datamodule.manifest.root}"
            print_report(report, title=title)
            write_report(report, output_dir / "test_report", title=title)

    summary = {
        "metrics": metrics,
        "test_results": test_results(report),
        "best_checkpoint": best_ckpt,
        "output_dir": str(output_dir),
        "split": datamodule.manifest.splitter.name,
        "protocol": protocol,
        "split_sizes": datamodule.manifest.split_sizes,
        "speakers": speaker_note(datamodule.manifest),
        "leakage": leakage.to_dict(),
        "calibration": calibration,
        "cache_events": list(datamodule.cache_events),
        "skipped_files": skip_counts(datamodule.manifest.scan.rejected),
        "labels": list(datamodule.label_names),
        "seconds": time.perf_counter() - started,
    }
    if trainer.is_global_zero:
        print_run_summary(summary, save_to=output_dir / "summary.json")
    objects["summary"] = summary
    return metrics, objects


def validation_logits(module, datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of an SERModule's model (in eval mode) and the labels of the whole validation split, in table
    order: read from its dataset, not through the run's loader, which under DDP (or with rows
    held on the device) gives each process its shard only."""
    logits, labels = [], []
    device = next(module.parameters()).device
    loader = DataLoader(
        datamodule.dataset("val"), batch_size=datamodule.loader.batch_size, collate_fn=collate_batch
    )
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                inputs = {k: v.to(device) for k, v in batch.items() if k in ("features", "waveform")}
                logits.append(module.model(module.model.inputs(inputs)).float().cpu())
                labels.append(batch["label"].cpu())
    finally:
        module.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def calibrate_checkpoint(best_ckpt: str, datamodule, model, method: str, write: bool) -> dict | None:
    """Fit the temperature of the best checkpoint on the validation split and store it there.

    The best weights are read from the file into the run's own model (which held the last
    epoch's; the test stage loads the same best weights), rather than a model rebuilt from the
    file: that would read the run's pretrained-encoder files again, under the rules for files
    someone else made. The record goes into the checkpoint's hyper-parameters (`calibration`,
    plain numbers) and into `model`, whose test stage then reports calibrated probabilities. Every
    process fits the same temperature on the same clips; the first one writes the file.
    """
    if method not in CALIBRATION_METHODS:
        raise InvalidSetting(f"calibration={method!r} must be one of {CALIBRATION_METHODS}")
    if method == "none":
        model.set_calibration(None)
        return None
    model.load_state_dict(read_checkpoint(best_ckpt)["state_dict"])
    logits, labels = validation_logits(model, datamodule)
    record = fit_temperature(logits.numpy(), labels.numpy())
    log.info(
        "calibration: temperature %.3f fitted on %d validation clips (NLL %.3f -> %.3f), stored in %s",
        record["temperature"],
        record["files"],
        record["nll_before"],
        record["nll_after"],
        Path(best_ckpt).name,
    )
    if write:
        raw = torch.load(best_ckpt, map_location="cpu", weights_only=True)
        raw["hyper_parameters"]["calibration"] = record
        with atomic_write(Path(best_ckpt), template=CHECKPOINT_TEMPORARY_TEMPLATE, sync=True) as staging:
            torch.save(raw, staging)
    model.set_calibration(record)
    return record


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
