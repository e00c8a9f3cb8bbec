"""The evaluation of a test stage: every tested clip's probabilities, scored once into one report.

`trainer.test` runs `SERModule.test_step` over a loader of a data module's clips; ReportCollector
keeps what each step returns (the clips' table rows, true labels and logits), gathers them from
every process under DDP, and at the end of the test epoch scores them with `evaluation_report`.
That one report is what the `test/` metrics are logged from, what train writes to
`<run>/test_report/` and into its summary, what eval writes, and what the W&B media show.
`tested_split` runs such a test stage on one split of a data module, as eval does.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from ser_lightning.calibration import probabilities as calibrated_probabilities
from ser_lightning.conformal import conformal_of
from ser_lightning.data.leakage import clip_table, speaker_note
from ser_lightning.data.loading import collate_batch
from ser_lightning.data.utterances import relative_paths
from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.metrics import STAGE_SCORES
from ser_lightning.reporting.dimension_report import (
    DimensionReport,
    dimension_report,
    print_dimension_report,
    write_dimension_report,
)
from ser_lightning.reporting.evaluation import EvaluationReport, evaluation_report
from ser_lightning.reporting.evaluation_console import print_report
from ser_lightning.reporting.evaluation_files import write_report
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:
    from ser_lightning.data.datamodule import SERDataModule
    from ser_lightning.module import SERModule


def gather_items(trainer: pl.Trainer, items: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Gather the `items` (one per clip, along dim 0) of every process, rank after rank.

    Processes may hold different numbers of clips: each pads its own to the longest before the
    gather, and the padding is cut off again.

    Args:
        trainer: the running Trainer, whose strategy gathers.
        items: this process's items.
        device: the device the collective runs on (the module's).

    Returns:
        Every process's items concatenated on the CPU; `items` itself in a single process.
    """
    if trainer.world_size == 1:
        return items
    strategy = trainer.strategy
    count = torch.tensor([len(items)], dtype=torch.int64, device=device)
    counts = strategy.all_gather(count).flatten().tolist()
    padded = torch.zeros((max(counts), *items.shape[1:]), dtype=items.dtype, device=device)
    padded[: len(items)] = items.to(device)
    gathered = strategy.all_gather(padded)  # (world size, longest, ...)
    return torch.cat([gathered[rank, :n] for rank, n in enumerate(counts)]).cpu()


class ReportCollector(pl.Callback):
    """Collects a test stage's outputs and turns them into one EvaluationReport (`self.report`).

    Every clip counts once: a clip tested twice (DDP's sampler repeats clips so that every
    process gets as many) keeps its first scores. The report lists clips in the order of the
    data module's table, the order a single process tests them in, with their paths relative to
    the corpus root; `self.rows` holds each one's table row. The rows index the `table` (and its
    paths lie under the `root`) of `datamodule`, or of the trainer's data module when none is given.

    At the end of the test epoch it logs `test/acc` (WA), `test/ua`, `test/f1` (macro-F1) and
    `test/recall_<emotion>` from the report, the same value on every process. `self.report` is
    None until a test epoch scored at least one clip.

    Probabilities are the module's calibrated ones (`pl_module.model.temperature`, see
    ser_lightning.calibration); the report also scores the uncalibrated ones' ECE. Each clip's
    speaker, gender and intensity come from the table, for the speaker-bootstrap intervals
    (`bootstrap` settings) and the breakdowns.
    """

    def __init__(self, datamodule=None, bootstrap: BootstrapSettings | None = None):
        self.datamodule = datamodule
        self.bootstrap = bootstrap or BootstrapSettings()
        self.report: EvaluationReport | None = None
        self.rows = np.zeros(0, dtype=np.int64)
        self._rows: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []
        self._logits: list[torch.Tensor] = []
        # task=dimensional|multitask: the scores of the dimensions (reporting/dimension_report.py)
        self.dimension_report: DimensionReport | None = None
        self._dimensions: list[torch.Tensor] = []

    @staticmethod
    def of(trainer: pl.Trainer) -> ReportCollector | None:
        """Find the trainer's collector.

        Returns:
            The first ReportCollector among the trainer's callbacks, or None.
        """
        return next((cb for cb in trainer.callbacks if isinstance(cb, ReportCollector)), None)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Forget the previous test stage's report and outputs."""
        self.report, self.rows = None, np.zeros(0, dtype=np.int64)
        self._rows, self._labels, self._logits = [], [], []
        self.dimension_report, self._dimensions = None, []

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        """Keep the step's table rows, true labels and (float32) logits, on the CPU."""
        self._rows.append(torch.as_tensor(outputs["row"]).detach().flatten().cpu())
        self._labels.append(outputs["target"].detach().flatten().cpu())
        # float32 whatever the precision the logits were computed in
        if outputs["logits"] is not None:
            self._logits.append(outputs["logits"].detach().float().cpu())
        if outputs.get("dimensions") is not None:
            self._dimensions.append(outputs["dimensions"].detach().float().cpu())

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Gather every process's outputs, score each clip once into `self.report`, log the test metrics."""
        labels = list(pl_module.model.labels)
        local = (
            torch.cat(self._rows) if self._rows else torch.zeros(0, dtype=torch.int64),
            torch.cat(self._labels) if self._labels else torch.zeros(0, dtype=torch.int64),
            torch.cat(self._logits) if self._logits else torch.zeros(0, len(labels)),
        )
        self._rows, self._labels, self._logits = [], [], []
        dimensions = torch.cat(self._dimensions) if self._dimensions else torch.zeros(len(local[0]), 3)
        self._dimensions = []
        rows, y_true, logits = (gather_items(trainer, t, pl_module.device) for t in local)
        dimensions = gather_items(trainer, dimensions, pl_module.device)
        rows, y_true = rows.numpy(), y_true.numpy()
        if len(rows) == 0:
            return
        self.rows, first = np.unique(rows, return_index=True)  # table order, each clip once
        datamodule = self.datamodule if self.datamodule is not None else trainer.datamodule
        manifest = datamodule.manifest
        tested = manifest.table.iloc[self.rows]
        files = relative_paths(tested, manifest.root).tolist()
        model = pl_module.model
        if model.task.has_dimensions:
            self.dimension_report = dimension_report(
                files,
                tested["actor"].tolist(),
                model.dimension_scale.denormalise(dimensions[torch.as_tensor(first)].numpy()),
                # the ratings on the corpus's scale; require_dimensions names files without one
                datamodule.require_dimensions() and tested[list(DIMENSIONS)].to_numpy(),
                model.dimension_scale.to_dict(),
                self.bootstrap,
            )
            values = self.dimension_report.summary()
            pl_module.log_dict({f"test/{k}": v for k, v in values.items()}, sync_dist=True, reduce_fx="max")
        if not model.task.has_categories:
            return
        temperature = pl_module.model.temperature
        logits = logits[torch.as_tensor(first)]
        self.report = evaluation_report(
            files,
            y_true[first],
            calibrated_probabilities(logits, temperature).numpy(),
            labels,
            # a table without speakers (a hand-made data module) gets no intervals or breakdowns
            clips=clip_table(tested) if "actor" in tested else None,
            bootstrap=self.bootstrap,
            uncalibrated_probabilities=None
            if temperature == 1.0
            else calibrated_probabilities(logits).numpy(),
            temperature=temperature,
            speakers=speaker_note(manifest) if hasattr(manifest, "assignment") else None,
            # the sets of emotions, on calibrated probabilities only (eval calibration=none has none)
            conformal=conformal_of(pl_module.model.calibration),
        )
        self.report.dimensions = self.dimension_report
        self._log(pl_module, self.report)

    @staticmethod
    def _log(pl_module: pl.LightningModule, report: EvaluationReport) -> None:
        # in name order, as the train/ and val/ metric collections log theirs
        values = {f"test/{name}": STAGE_SCORES[name](report.confusion) for name in sorted(STAGE_SCORES)}
        recall = report.per_class["recall"]
        values.update({f"test/recall_{name}": recall[name] for name in report.labels})
        # Every process holds the same gathered report; max hands its values back unchanged.
        pl_module.log_dict(values, sync_dist=True, reduce_fx="max")


def device_settings(device: torch.device) -> dict[str, Any]:
    """The Trainer's `accelerator` and `devices` that run on one torch device.

    Args:
        device: the device to run on.

    Returns:
        The two Trainer arguments.
    """
    if device.type == "cuda":
        return {"accelerator": "cuda", "devices": [device.index or 0]}
    return {"accelerator": device.type, "devices": 1}


def split_dimension_report(
    module: SERModule,
    datamodule: SERDataModule,
    split: str,
    device: torch.device,
    batch_size: int,
    bootstrap: BootstrapSettings | None = None,
) -> DimensionReport:
    """Score one split with a task=dimensional model (`tested_split`): CCC, r and MAE per dimension.

    Returns:
        The split's dimension report, with speaker intervals as the training run's test stage.
    """
    return tested_split(module, datamodule, split, device, batch_size, bootstrap).dimension_report


def tested_split(
    module: SERModule,
    datamodule: SERDataModule,
    split: str,
    device: torch.device,
    batch_size: int,
    bootstrap: BootstrapSettings | None = None,
) -> ReportCollector:
    """Score one split of a set-up data module (`all` = its whole corpus) on `device`.

    The split's clips, in table order, go through `trainer.test` and ReportCollector, the test
    stage of a training run.

    Args:
        module: the SERModule to score with.
        datamodule: a set-up data module whose labels are the model's.
        split: the split to score ("test", "val", "train", or "all": the test split of
            `data.split=test_only`).
        device: where the model runs.
        batch_size: clips per batch.
        bootstrap: resamples and seed of the report's speaker intervals.

    Returns:
        The collector that scored it: its `report` (classes) and `dimension_report` (dimensions).

    Raises:
        InvalidSetting: an empty split, or data labels other than the model's.
    """
    name = "test" if split == "all" else split
    if len(datamodule.manifest.indices[name]) == 0:
        raise InvalidSetting(
            f"the {name} split of data.split={datamodule.splitter.name} holds no files of {datamodule.manifest.root}; "
            "choose split=test or split=all"
        )
    if tuple(datamodule.label_names) != tuple(module.model.labels):
        raise InvalidSetting(
            f"the data's labels {list(datamodule.label_names)} differ from the model's {list(module.model.labels)}"
        )
    loader = DataLoader(
        datamodule.dataset(name),
        batch_size=batch_size,
        shuffle=False,
        pin_memory=device.type == "cuda",
        collate_fn=collate_batch,
    )
    collector = ReportCollector(datamodule, bootstrap)
    # Lightning's notes on which accelerators exist, and on loggers, are not about this evaluation
    lightning_notes = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    level = lightning_notes.level
    lightning_notes.setLevel(logging.WARNING)
    try:
        trainer = pl.Trainer(
            **device_settings(device),
            logger=False,
            callbacks=[collector],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        with warnings.catch_warnings():
            # the cached arrays are read in this process, as they are memory-mapped
            warnings.filterwarnings("ignore", message=".*does not have many workers")
            trainer.test(module, dataloaders=loader, verbose=False)
    finally:
        lightning_notes.setLevel(level)
    return collector


def test_best_checkpoint(
    trainer: pl.Trainer,
    model: SERModule,
    datamodule: SERDataModule,
    best_ckpt: str,
    output_dir: Path,
    protocol: dict,
) -> EvaluationReport | None:
    """Test the best checkpoint of a run, or its current weights when none was saved.

    The report is printed and written to `<output_dir>/test_report/` on the first process.

    Args:
        trainer: the run's Trainer, with a ReportCollector among its callbacks.
        model: the run's SERModule.
        datamodule: the run's set-up data module.
        best_ckpt: the best checkpoint's path, or "" when none was saved.
        output_dir: the run folder.
        protocol: the run's protocol card (`data.protocol_card`), stored with the report; the
            run summary carries the same one.

    Returns:
        The report the logged test metrics came from, or None when the test stage scored no files.
    """
    log = logging.getLogger("ser_lightning.train")  # the training run's warnings, under its name
    ckpt = best_ckpt or None
    if ckpt is None:
        log.warning("no best checkpoint was saved; testing the current weights")
    trainer.test(model=model, datamodule=datamodule, ckpt_path=ckpt, weights_only=True if ckpt else None)
    # the report the logged test metrics came from: the test batches trainer.test ran
    report = ReportCollector.of(trainer).report
    dimensions = ReportCollector.of(trainer).dimension_report
    if dimensions is not None and trainer.is_global_zero:
        title = f"Dimensions: the test split ({datamodule.splitter.name}) of {datamodule.manifest.root}"
        print_dimension_report(dimensions, title)
        write_dimension_report(dimensions, output_dir / "test_report")
    if report is None and dimensions is None:
        log.warning("the test stage scored no files; no test report is written")
    elif report is not None and trainer.is_global_zero:  # task=dimensional has no class scores
        title = f"Test report: the test split ({datamodule.splitter.name}) of {datamodule.manifest.root}"
        print_report(report, title=title)
        write_report(report, output_dir / "test_report", title=title, protocol=protocol)
    return report
