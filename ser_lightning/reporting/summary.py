"""The end of a training run: its best checkpoint calibrated and tested, and the short summary.

`finish_run` is what train runs after fitting; `run_summary` collects the summary (written to
summary.json) and `print_run_summary` prints it as a short, readable table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from ser_lightning.checkpoint_calibration import calibrate_checkpoint, calibration_settings
from ser_lightning.data.leakage import speaker_note
from ser_lightning.data.protocol_card import protocol_card
from ser_lightning.data.quality import skip_counts
from ser_lightning.reporting.agreement import agreement_metrics, agreement_section, agreement_text
from ser_lightning.reporting.collector import ReportCollector, test_best_checkpoint
from ser_lightning.reporting.conformal import conformal_cells
from ser_lightning.reporting.evaluation import EvaluationReport
from ser_lightning.reporting.evaluation_console import speaker_note_text

if TYPE_CHECKING:
    import pytorch_lightning as pl
    from omegaconf import DictConfig

    from ser_lightning.data.datamodule import SERDataModule
    from ser_lightning.data.leakage import LeakageReport
    from ser_lightning.module import SERModule

SKIP_STAGES = {"label": "refused by the corpus parser", "audio": "without decodable audio"}
METRIC_ROWS = (
    ("test/acc", "accuracy (WA)"),
    ("test/ua", "unweighted accuracy (UA)"),
    ("test/f1", "macro-F1"),
    ("val/ua_best", "best validation UA"),
)


def test_results(report: EvaluationReport | None) -> dict:
    """Collect the summary's `test_results` from the test report.

    Args:
        report: the test report, or None when the test stage scored no files.

    Returns:
        Per-class recall, the confusion matrix, the speaker-bootstrap intervals, calibration,
        the gender gap and (with `calibration=conformal`) the conformal sets' coverage of the
        report; {} without a report.
    """
    if report is None:
        return {}
    return {
        "per_class_recall": dict(zip(report.labels, report.per_class["recall"].tolist(), strict=True)),
        "confusion_matrix": report.confusion.tolist(),
        "intervals": report.intervals,
        "calibration": report.calibration,
        "gender_gap": report.gender_gap,
        **({"conformal": report.conformal} if report.conformal else {}),
    }


# summary metric -> the key of its interval in the test report
INTERVAL_KEYS = {"test/acc": "accuracy", "test/ua": "ua", "test/f1": "macro_f1"}


def protocol_text(summary: dict) -> str:
    """Put a run's split in words.

    Args:
        summary: a run summary (`run_summary`).

    Returns:
        The split's name, with the fold for cross-validation runs and the test corpus when
        testing on another corpus.
    """
    protocol = summary.get("protocol") or {}
    text = str(protocol.get("split", summary.get("split")))
    if "fold" in protocol:
        text += f" fold {protocol['fold']} of {protocol['num_folds']}"
        if isinstance(protocol.get("folds"), str) and protocol["folds"] != "actors":
            text += f" ({protocol['folds']} folds)"
    if protocol.get("test_corpus"):
        text += f" testing on {protocol['test_corpus']}"
    return text


def run_summary(
    datamodule: SERDataModule,
    metrics: dict[str, float],
    report: EvaluationReport | None,
    best_ckpt: str,
    output_dir: Path,
    leakage: LeakageReport,
    calibration: dict | None,
    seconds: float,
    protocol: dict,
) -> dict:
    """The summary of a training run, as train prints it and writes it to summary.json.

    Args:
        datamodule: the run's set-up data module (split, protocol, speakers, caches, skipped files).
        metrics: the logged metrics, fit and test.
        report: the test report, or None.
        best_ckpt: the best checkpoint's path, or "".
        output_dir: the run folder.
        leakage: the leakage check of the split.
        calibration: the calibration record, or None.
        seconds: the run's wall-clock time.
        protocol: the run's protocol card (`data.protocol_card`), the one its test report carries.

    Returns:
        The summary, plain values only.
    """
    manifest = datamodule.manifest
    return {
        "metrics": metrics,
        "test_results": test_results(report),
        "best_checkpoint": best_ckpt,
        "output_dir": str(output_dir),
        "split": manifest.splitter.name,
        "protocol": manifest.protocol(),
        "protocol_card": protocol,
        "split_sizes": manifest.split_sizes,
        "speakers": speaker_note(manifest),
        "leakage": leakage.to_dict(),
        "calibration": calibration,
        "cache_events": list(datamodule.cache_events),
        "skipped_files": skip_counts(manifest.scan.rejected),
        "labels": list(datamodule.label_names),
        "seconds": seconds,
    }


def print_run_summary(
    summary: dict, save_to: str | Path | None = None, console: Console | None = None
) -> None:
    """Print a run summary as a table and optionally save it as JSON.

    The table shows the test scores (with their speaker intervals), calibration, the gender
    gap, per-class recall, the split, the speaker note, the leakage check, caches, skipped
    files, the best checkpoint, the run folder and the time.

    Args:
        summary: the summary of `run_summary`.
        save_to: where to write it as JSON (summary.json), or None.
        console: where to print; a new rich Console when None.
    """
    console = console or Console()
    metrics = summary["metrics"]
    table = Table(title="Run summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", overflow="fold")
    results = summary.get("test_results") or {}
    intervals = results.get("intervals") or {}
    for key, label in METRIC_ROWS:
        if key in metrics:
            value = f"{metrics[key]:.3f}"
            interval = (intervals.get("intervals") or {}).get(INTERVAL_KEYS.get(key, ""))
            if interval:
                value += f"  {100 * intervals['confidence']:.0f} % [{interval[0]:.3f}, {interval[1]:.3f}]"
            table.add_row(label, value)
    if intervals:
        table.add_row(
            "intervals",
            f"bootstrap over {intervals['speakers']} test speakers, {intervals['resamples']} resamples, "
            f"seed {intervals['seed']}",
        )
    calibration = results.get("calibration") or {}
    if calibration:
        text = f"ECE {calibration['ece']:.3f} at temperature {calibration['temperature']:.2f}"
        if "ece_uncalibrated" in calibration:
            text += f" (uncalibrated {calibration['ece_uncalibrated']:.3f})"
        table.add_row("test calibration", text)
    if results.get("conformal"):
        table.add_row(*conformal_cells(results["conformal"]))
    gap = results.get("gender_gap")
    if gap:
        table.add_row(
            "test UA female / male",
            f"{gap['ua_female']:.3f} / {gap['ua_male']:.3f} (gap {gap['female_minus_male']:+.3f})",
        )
    recall = summary.get("test_results", {}).get("per_class_recall")
    if recall:
        table.add_row("test recall per class", "  ".join(f"{k} {v:.2f}" for k, v in recall.items()))
    sizes = summary.get("split_sizes", {})
    table.add_row("split", f"{protocol_text(summary)} ({', '.join(f'{k} {v}' for k, v in sizes.items())})")
    note = speaker_note_text(summary.get("speakers") or {})
    if note:
        table.add_row("speakers", note)
    leakage = summary.get("leakage")
    if leakage:
        table.add_row(
            "leakage check",
            f"{leakage['recordings_checked']} recordings hashed: none in two splits"
            + (
                f", {leakage['copies_within_one_split']} copies within a split"
                if leakage["copies_within_one_split"]
                else ""
            ),
        )
    table.add_row("caches", ", ".join(summary.get("cache_events", [])) or "-")
    skipped = summary.get("skipped_files") or {}
    if skipped:
        detail = ", ".join(f"{n} {SKIP_STAGES.get(stage, stage)}" for stage, n in skipped.items())
        table.add_row("skipped files", f"{sum(skipped.values())} ({detail}): see rejected_files.csv")
    table.add_row("best checkpoint", summary.get("best_checkpoint") or "-")
    table.add_row("run directory", summary.get("output_dir", "-"))
    table.add_row("time", f"{summary.get('seconds', 0.0):.0f} s")
    console.print(table)
    if save_to is not None:
        Path(save_to).write_text(json.dumps(summary, indent=2, default=str))


def finish_run(
    trainer: pl.Trainer,
    model: SERModule,
    datamodule: SERDataModule,
    output_dir: Path,
    leakage: LeakageReport,
    started: float,
    cfg: DictConfig,
) -> tuple[dict[str, float], dict]:
    """After fitting: calibrate and test the best checkpoint, then print and save the run summary.

    The temperature is fitted only when the run trained and saved a best checkpoint
    (`calibrate_checkpoint`); the test stage scores the best checkpoint, or the current weights
    when none was saved (`test_best_checkpoint`). The first process prints the summary and
    writes it to `<output_dir>/summary.json`.

    Args:
        trainer: the run's Trainer.
        model: the run's SERModule.
        datamodule: the run's set-up data module.
        output_dir: the run folder.
        leakage: the leakage check of the split.
        started: `time.perf_counter()` when the run started.
        cfg: the run's config: `train` (whether it fitted), `calibration` (`method`:
            "temperature", the default, "conformal" or "none"; `coverage`) and `test` (whether
            to test) are read.

    Returns:
        The logged metrics (fit and test) and the run summary.
    """
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    best_ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    record = None
    if cfg.get("train") and best_ckpt:
        method, coverage = calibration_settings(cfg.get("calibration", "temperature"))
        record = calibrate_checkpoint(best_ckpt, datamodule, model, method, trainer.is_global_zero, coverage)
    # computed once (it hashes every file of the corpus): the test report and the summary carry it
    card = protocol_card(datamodule.manifest)
    report = None
    if cfg.get("test"):
        report = test_best_checkpoint(trainer, model, datamodule, best_ckpt, output_dir, card)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    # a corpus with annotator votes: the test report's agreement section (reporting/agreement.py)
    agreement = None
    if report is not None and trainer.is_global_zero:
        rows = ReportCollector.of(trainer).rows
        title = "Confidence against annotator agreement (test split)"
        section = agreement_section(
            report, datamodule, rows, output_dir / "test_report", cfg.get("agreement"), title
        )
        agreement = section[0] if section is not None else None
        if agreement is not None:
            print(agreement_text(agreement))
            # its scores join the run's metrics: summary.json, the study report and every logger (W&B)
            values = agreement_metrics(agreement)
            metrics.update(values)
            for logger in trainer.loggers:
                logger.log_metrics(values, step=trainer.global_step)
                logger.save()
    seconds = time.perf_counter() - started
    summary = run_summary(datamodule, metrics, report, best_ckpt, output_dir, leakage, record, seconds, card)
    if agreement is not None:
        summary["test_results"]["agreement"] = agreement
    if trainer.is_global_zero:
        print_run_summary(summary, save_to=output_dir / "summary.json")
    return metrics, summary
