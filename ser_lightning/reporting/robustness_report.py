"""The robustness part of an evaluation (`python -m ser_lightning.eval robustness=standard`).

The split's clips are scored clean and under each corruption of `reporting.robustness`, written
as robustness.csv and robustness.png and printed as a table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from ser_lightning.data.leakage import clip_table
from ser_lightning.data.utterances import relative_paths
from ser_lightning.inference.predictor import Predictor
from ser_lightning.reporting.evaluation import evaluation_report
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.reporting.robustness import plot_robustness, robustness_table, standard_conditions

if TYPE_CHECKING:  # annotations only: importing the data module here would load Lightning
    from ser_lightning.data.datamodule import SERDataModule
    from ser_lightning.model import SERModel

log = logging.getLogger("ser_lightning.eval")


def robustness_report(
    model: SERModel,
    datamodule: SERDataModule,
    split: str,
    device: torch.device,
    batch_size: int,
    settings: dict,
    output_dir: Path,
    title: str,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Score the split's clips clean and under each condition of `settings`.

    Writes robustness.csv and robustness.png and prints the table.

    Args:
        model: the SERModel that scores the clips (through a Predictor, as predict does).
        datamodule: a set-up data module holding the split's waveforms.
        split: the scored split (`all`: the data module's test split, every file).
        device: where the model runs.
        batch_size: clips per batch.
        settings: the robustness config (`conf/robustness/standard.yaml`: conditions, seed,
            resamples).
        output_dir: where robustness.csv and robustness.png are written.
        title: the evaluation's title, above the plot.

    Returns:
        The table (one row per condition, clean first) and the files written, by kind.
    """
    manifest = datamodule.manifest
    rows = manifest.indices["test" if split == "all" else split]
    tested = manifest.table.iloc[rows]
    clips = clip_table(tested)
    files = relative_paths(tested, manifest.root).tolist()
    y_true = manifest.labels[rows]
    predictor = Predictor(model, device=device, batch_size=batch_size)
    bootstrap = BootstrapSettings(
        resamples=int(settings.get("resamples", 300)), seed=int(settings.get("seed", 0))
    )

    def score(waveforms: np.ndarray) -> dict:
        report = evaluation_report(
            files,
            y_true,
            predictor.waveform_probabilities(waveforms),
            model.labels,
            clips=clips,
            bootstrap=bootstrap,
        )
        ua_interval = report.intervals["intervals"]["ua"] or [np.nan, np.nan]
        return {
            **{k: report.metrics[k] for k in ("ua", "accuracy", "macro_f1")},
            "ua_low": ua_interval[0],
            "ua_high": ua_interval[1],
            "ece": report.calibration["ece"],
            "files": report.metrics["num_files"],
        }

    conditions = standard_conditions(settings, model.audio.sample_rate)
    done = iter(range(1, len(conditions) + 1))
    table = robustness_table(
        score,
        np.asarray(datamodule.arrays.waveforms[rows]),
        clips["speaker"],
        conditions,
        int(settings.get("seed", 0)),
        model.audio.peak_normalize,
        progress=lambda name: log.info("robustness: %s (%d/%d)", name, next(done), len(conditions)),
    )
    written = {
        "robustness": str(output_dir / "robustness.csv"),
        "robustness_png": str(output_dir / "robustness.png"),
    }
    table.to_csv(written["robustness"], index=False, float_format="%.6f")
    plot_robustness(table, written["robustness_png"], f"{title}\nrobustness, seed {settings.get('seed', 0)}")
    printed = Table(title=f"Robustness: UA per condition ({len(y_true)} clips)", title_justify="left")
    for column in ("condition", "UA", "95 % interval", "vs clean", "WA", "macro-F1", "measured SNR"):
        printed.add_column(column, justify="left" if column == "condition" else "right")
    for _, row in table.iterrows():
        printed.add_row(
            row["condition"],
            f"{row['ua']:.3f}",
            "" if pd.isna(row["ua_low"]) else f"[{row['ua_low']:.3f}, {row['ua_high']:.3f}]",
            "" if row["condition"] == "clean" else f"{row['ua_change']:+.3f}",
            f"{row['accuracy']:.3f}",
            f"{row['macro_f1']:.3f}",
            "" if pd.isna(row["measured_snr_db"]) else f"{row['measured_snr_db']:.1f} dB",
        )
    Console().print(printed)
    return table, written
