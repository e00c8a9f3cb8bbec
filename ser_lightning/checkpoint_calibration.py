"""Post-training calibration: the temperature of a run's best checkpoint, stored in it.

The temperature is fitted on the validation split (`calibration=temperature`, train's default);
`calibration=conformal` also fits the threshold of conformal prediction sets on the same clips'
calibrated probabilities, for `calibration.coverage` (`ser_lightning.conformal`).

Training-side (it takes the run's SERModule and data module); the fitting itself and the
logits → probabilities function are in `ser_lightning.calibration`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader

from ser_lightning.calibration import CALIBRATION_METHODS, fit_temperature, probabilities
from ser_lightning.checkpoint import CHECKPOINT_TEMPORARY_TEMPLATE, read_checkpoint
from ser_lightning.conformal import DEFAULT_COVERAGE, check_coverage, fit_conformal, minimum_clips
from ser_lightning.data.loading import collate_batch
from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.files import atomic_write

if TYPE_CHECKING:  # annotations only: the module and the data module import this one's callers
    from ser_lightning.data.datamodule import SERDataModule
    from ser_lightning.module import SERModule

log = logging.getLogger("ser_lightning.train")


def validation_logits(module: SERModule, datamodule: SERDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits of an SERModule's model (in eval mode) and the labels of the whole validation split.

    In table order: read from its dataset, not through the run's loader, which under DDP (or with
    rows held on the device) gives each process its shard only.

    Args:
        module: the SERModule; its model scores the clips on the module's device.
        datamodule: the set-up data module of the run.

    Returns:
        The logits `(clips, classes)` and the labels `(clips,)`, on the CPU.
    """
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
                inputs = {
                    k: v.to(device) for k, v in batch.items() if k in ("features", "waveform", "lengths")
                }
                logits.append(module.model(module.model.inputs(inputs), inputs.get("lengths")).float().cpu())
                labels.append(batch["label"].cpu())
    finally:
        module.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def calibration_settings(setting: object) -> tuple[str, float]:
    """Read train's `calibration` config: a group option (`method`, `coverage`) or a bare method name.

    Args:
        setting: `cfg.calibration`: a mapping such as `{method: conformal, coverage: 0.9}`, or a
            string such as "temperature" (configs written before `calibration` was a group).

    Returns:
        The method and the conformal coverage (the default when the setting has none).

    Raises:
        InvalidSetting: an unknown method or a coverage outside (0, 1).
    """
    if setting is None:
        return "none", DEFAULT_COVERAGE
    if isinstance(setting, str):
        method, coverage = setting, DEFAULT_COVERAGE
    else:
        method = str(setting.get("method", "temperature"))
        coverage = setting.get("coverage", DEFAULT_COVERAGE)
    if method not in CALIBRATION_METHODS:
        raise InvalidSetting(
            f"calibration={method!r} must be one of {CALIBRATION_METHODS} for training (e.g. calibration=conformal "
            "calibration.coverage=0.9); calibration=checkpoint is for eval and predict"
        )
    return method, check_coverage(coverage)


def conformal_record(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float, datamodule: SERDataModule, coverage: float
) -> dict:
    """Fit the conformal threshold on the validation clips' calibrated probabilities, speaker-aware.

    The record counts the validation speakers and how many of them also speak in the training and
    test splits; a split that shares them (`data.split=random`) gets a warning, because the
    guarantee then holds for speakers the model has heard, not for new ones.

    Args:
        logits: the validation clips' logits, in table order.
        labels: their true emotions.
        temperature: the fitted temperature.
        datamodule: the run's data module (its manifest's split assignment and speakers).
        coverage: the wanted coverage.

    Returns:
        The conformal record (`ser_lightning.conformal.fit_conformal`).
    """
    manifest = datamodule.manifest
    assignment = manifest.assignment.to_numpy()
    actors = manifest.table["actor"].astype(str).to_numpy()
    val = set(actors[assignment == "val"])
    in_training = len(val & set(actors[assignment == "train"]))
    in_test = len(val & set(actors[assignment == "test"]))
    record = fit_conformal(
        probabilities(logits, temperature).numpy(),
        labels.numpy(),
        coverage,
        speakers=actors[np.asarray(manifest.indices["val"])],
        split=manifest.splitter.name,
        speakers_in_training=in_training,
        speakers_in_test=in_test,
    )
    if record["rank"] > record["files"]:
        log.warning(
            "conformal sets: %d validation clips are too few for %.0f %% coverage (at least %d are needed): "
            "every set holds every emotion; lower calibration.coverage or validate on more clips",
            record["files"],
            100 * coverage,
            minimum_clips(coverage),
        )
    if in_training or in_test:
        log.warning(
            "conformal sets: %d of the %d validation speakers also speak in the training split and %d in the "
            "test split (data.split=%s): the %.0f %% coverage is calibrated on speakers the model has heard, "
            "and will fall short for new speakers; use a speaker-independent split (data.split=actor)",
            in_training,
            len(val),
            in_test,
            manifest.splitter.name,
            100 * coverage,
        )
    return record


def calibrate_checkpoint(
    best_ckpt: str,
    datamodule: SERDataModule,
    model: SERModule,
    method: str,
    write: bool,
    coverage: float = DEFAULT_COVERAGE,
) -> dict | None:
    """Fit the temperature of the best checkpoint on the validation split and store it there.

    The best weights are read from the file into the run's own model (which held the last
    epoch's; the test stage loads the same best weights), rather than a model rebuilt from the
    file: that would read the run's pretrained-encoder files again, under the rules for files
    someone else made. The record goes into the checkpoint's hyper-parameters (`calibration`,
    plain numbers) and into `model`, whose test stage then reports calibrated probabilities. Every
    process fits the same temperature on the same clips; the first one writes the file.

    Args:
        best_ckpt: the path of the best checkpoint.
        datamodule: the set-up data module of the run (its validation split).
        model: the run's SERModule.
        method: `calibration.method`: "temperature", "conformal" (the temperature, then the
            conformal threshold) or "none".
        write: whether this process writes the record into the file (the first process).
        coverage: the conformal sets' coverage (`calibration.coverage`), for "conformal".

    Returns:
        The calibration record (temperature, clips, NLL before and after, and for "conformal"
        the conformal record under `conformal`), or None for "none".

    Raises:
        InvalidSetting: an unknown method.
    """
    if method not in CALIBRATION_METHODS:
        raise InvalidSetting(f"calibration={method!r} must be one of {CALIBRATION_METHODS}")
    if method == "none" or not model.model.task.has_categories:  # task=dimensional: no class scores
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
    if method == "conformal":
        record["conformal"] = conformal_record(logits, labels, record["temperature"], datamodule, coverage)
        log.info(
            "calibration: conformal sets for %.0f %% coverage: every emotion of probability >= %.3f, "
            "fitted on %d validation clips of %d speakers",
            100 * coverage,
            1.0 - record["conformal"]["threshold"],
            record["conformal"]["files"],
            record["conformal"]["speakers"],
        )
    if write:
        raw = torch.load(best_ckpt, map_location="cpu", weights_only=True)
        raw["hyper_parameters"]["calibration"] = record
        with atomic_write(Path(best_ckpt), template=CHECKPOINT_TEMPORARY_TEMPLATE, sync=True) as staging:
            torch.save(raw, staging)
    model.set_calibration(record)
    return record
