"""Experiment loggers that survive an interrupted run being resumed in its own directory."""

from __future__ import annotations

import csv
from collections.abc import Iterable

from omegaconf import DictConfig
from pytorch_lightning.loggers import CSVLogger, Logger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

from ser_lightning.utils.config import to_plain


class ResumableCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a resumed run keeps the rows the interrupted one wrote.

    Lightning's writer deletes an existing metrics.csv. This one keeps its rows up to the step
    where the resumed run starts logging again; rows of the interrupted epoch, which the
    resumed run logs anew, are dropped, so every step appears once.
    """

    @property
    def experiment(self) -> ExperimentWriter:
        """The run's metrics writer, created on first use; it keeps the earlier run's rows."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


class _KeepingExperimentWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        self._earlier_rows: list[dict] | None = None
        self._earlier_keys: list[str] = []
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as handle:
                reader = csv.DictReader(handle)
                self._earlier_rows = list(reader)
                self._earlier_keys = list(reader.fieldnames or [])

    def save(self) -> None:
        if self._earlier_rows is not None and self.metrics:
            resumed_at = min(float(row["step"]) for row in self.metrics)
            kept = [row for row in self._earlier_rows if float(row["step"]) < resumed_at]
            with self._fs.open(self.metrics_file_path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self._earlier_keys)
                writer.writeheader()
                writer.writerows(kept)
            self.metrics_keys = sorted(self._earlier_keys)
            self._earlier_rows = None
        super().save()


def log_run_config(loggers: Iterable[Logger], cfg: DictConfig, protocol: dict) -> None:
    """Log a run's config (without `hydra`) and its split protocol as every logger's hyper-parameters.

    Args:
        loggers: the trainer's experiment loggers.
        cfg: the run's composed config.
        protocol: the split protocol (`Manifest.protocol()`), logged as `protocol`.
    """
    for experiment_logger in loggers:
        experiment_logger.log_hyperparams(
            {**{key: to_plain(cfg[key]) for key in cfg if key != "hydra"}, "protocol": protocol}
        )
