"""Weights & Biases: safe set-up (never hangs without network), per-sweep groups, media at test end."""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, open_dict

from ser_lightning.reporting.collector import ReportCollector
from ser_lightning.utils.jobs import sweep_dir

log = logging.getLogger(__name__)


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError):
        return False
    return auth is not None


def prepare_wandb_config(cfg: DictConfig, sweep_name: str | None = None) -> None:
    """Adjust `cfg.logger.wandb` before it is instantiated.

    - Without credentials and without WANDB_MODE=offline/disabled, wandb would prompt for a
      login and wait forever on a machine with no terminal: switch to offline and say so.
    - In a sweep, every job of the sweep shares one group (the sweep folder's name) unless a
      group is set.
    """
    if not cfg.get("logger") or "wandb" not in cfg.logger or cfg.logger.wandb is None:
        return
    node = cfg.logger.wandb
    mode = os.environ.get("WANDB_MODE", "").lower()
    with open_dict(node):
        if (
            not node.get("offline")
            and mode not in ("offline", "disabled", "dryrun")
            and not _has_wandb_credentials()
        ):
            log.warning(
                "logger=wandb: no WANDB_API_KEY or wandb login found; logging offline. "
                "Sync later with `wandb sync %s/wandb/offline-run-*`.",
                cfg.paths.output_dir,
            )
            node.offline = True
        if not node.get("group") and sweep_name:
            node.group = sweep_name


def sweep_name() -> str | None:
    """Name the sweep this job belongs to, the default W&B group of its jobs.

    Returns:
        The name of the sweep folder (`utils.jobs.sweep_dir`), or None for a single run.
    """
    folder = sweep_dir()
    return folder.name if folder is not None else None


def finish_wandb() -> None:
    """Close the active run so the next job of a multirun starts its own."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    if wandb.run is not None:
        wandb.finish()


class WandbMediaCallback(pl.Callback):
    """At test end, log to W&B what people look at.

    That is the confusion matrix, per-class table, spectrograms, and the audio of misclassified
    clips, all of the test report that the trainer's ReportCollector built. Does nothing without
    a WandbLogger (or without that report).
    """

    def __init__(self, num_spectrograms: int = 4, num_misclassified_audio: int = 8):
        self.num_spectrograms = num_spectrograms
        self.num_misclassified_audio = num_misclassified_audio

    @staticmethod
    def _wandb_logger(trainer: pl.Trainer):
        from pytorch_lightning.loggers import WandbLogger

        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    # on_test_end: after every callback's on_test_epoch_end, the collector's included
    def on_test_end(self, trainer, pl_module) -> None:
        """Log the test report's media to the W&B run, on the first process only."""
        logger = self._wandb_logger(trainer)
        collector = ReportCollector.of(trainer)
        if logger is None or not trainer.is_global_zero or collector is None or collector.report is None:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import wandb

        report, rows = collector.report, collector.rows
        labels, targets, preds = report.labels, report.y_true, report.y_pred
        run = logger.experiment
        media: dict = {
            "test/confusion_matrix": wandb.plot.confusion_matrix(
                y_true=targets.tolist(), preds=preds.tolist(), class_names=labels
            ),
            "test/per_class": wandb.Table(
                columns=["emotion", "precision", "recall", "f1", "support"],
                data=[
                    [name, float(row.precision), float(row.recall), float(row.f1), int(row.support)]
                    for name, row in report.per_class.iterrows()
                ],
            ),
        }
        datamodule = trainer.datamodule
        images = []
        for row, target in list(zip(rows, targets, strict=True))[: self.num_spectrograms]:
            figure, axis = plt.subplots(figsize=(5, 3))
            axis.imshow(np.asarray(datamodule.arrays.features[row][0]), origin="lower", aspect="auto")
            axis.set_title(
                f"{labels[target]}: {Path(datamodule.manifest.table['path'].iloc[row]).name}", fontsize=8
            )
            images.append(wandb.Image(figure))
            plt.close(figure)
        media["test/spectrograms"] = images
        wrong = np.flatnonzero(targets != preds)[: self.num_misclassified_audio]
        media["test/misclassified_audio"] = [
            wandb.Audio(
                np.asarray(datamodule.arrays.waveforms[rows[i]]),
                sample_rate=datamodule.audio.sample_rate,
                caption=f"true {labels[targets[i]]}, predicted {labels[preds[i]]}: "
                f"{Path(datamodule.manifest.table['path'].iloc[rows[i]]).name}",
            )
            for i in wrong
        ]
        run.log(media)
