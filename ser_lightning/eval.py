"""Test a checkpoint and write its report: `python -m ser_lightning.eval ckpt_path=... [overrides]`.

By default the model is scored on the test split of the data config it was trained on (kept in
the checkpoint as plain settings, `ser_lightning.data.evaluation_data`); `data=<group>` scores it
on another corpus, `split=all` on every file, `robustness=standard` under each corruption too.
The audio settings, label set and feature extractor are always the checkpoint's. Files the model
trained or validated on are listed in eval.json and stop a speaker-independent evaluation unless
`allow_train_overlap=true` (`ser_lightning.data.provenance`). On a corpus with annotator votes the
report has the training run's agreement section too (`ser_lightning.reporting.agreement`;
`+agreement.threshold=...`, `+agreement.min_confidence=...`). docs/evaluation.md has the details.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from ser_lightning.checkpoint import RECORD_KEY, read_checkpoint
from ser_lightning.checkpoint_encoder import EncoderFiles
from ser_lightning.data.evaluation_data import build_eval_datamodule, eval_data_config
from ser_lightning.data.protocol_card import protocol_card
from ser_lightning.data.provenance import (
    check_training_overlap,
    overlap_warning,
    same_test_files,
    scored_training_files,
    warn_of_training_overlap,
)
from ser_lightning.inference.execution import resolve_device
from ser_lightning.inference.predict_steps import check_calibration_option
from ser_lightning.module import SERModule
from ser_lightning.reporting.agreement import agreement_section, agreement_text
from ser_lightning.reporting.collector import split_dimension_report, tested_split
from ser_lightning.reporting.dimension_report import print_dimension_report, write_dimension_report
from ser_lightning.reporting.evaluation import EvaluationReport
from ser_lightning.reporting.evaluation_console import print_report
from ser_lightning.reporting.evaluation_files import write_report
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.utils.config import CONFIG_DIR, silence_pytree_notice, to_plain
from ser_lightning.utils.errors import InvalidSetting, exits_on_user_mistake

log = logging.getLogger("ser_lightning.eval")

silence_pytree_notice()


def evaluate(cfg: DictConfig) -> tuple[EvaluationReport, dict[str, Any]]:
    """Load a checkpoint, score it on the chosen split and write its report.

    Args:
        cfg: The eval config (`ckpt_path`, `data`, `split`, `calibration`, `device`, ...).

    Returns:
        The evaluation report (None for a task=dimensional checkpoint, which has no classes:
        its summary's `dimensions` hold CCC, r and MAE) and the summary written as eval.json in
        `paths.output_dir`.

    Raises:
        InvalidSetting: If `calibration` is not "checkpoint" or "none", or `batch_size` is
            below 1.
    """
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = str(cfg.ckpt_path)
    checkpoint = read_checkpoint(ckpt_path)
    record = checkpoint[RECORD_KEY]
    # the test stage of training (SERModule, trainer.test and ReportCollector) scores the split
    module = SERModule.from_checkpoint(checkpoint, ckpt_path, encoder_files=EncoderFiles.of_command(cfg))
    model = module.model
    if not check_calibration_option(cfg.get("calibration", "checkpoint")):
        module.set_calibration(None)  # plain softmax probabilities, no conformal sets
    bootstrap = BootstrapSettings(**to_plain(cfg.get("bootstrap") or {}))
    machine = {"data_dir": str(cfg.paths.data_dir), "cache_dir": str(cfg.paths.cache_dir)}
    data, source = eval_data_config(to_plain(cfg.get("data")), record, ckpt_path, machine)
    split = str(cfg.split)

    # Caches are built on the CPU with the checkpoint's feature extractor before it moves.
    datamodule = build_eval_datamodule(data, model, split)
    datamodule.prepare_data()
    datamodule.setup("test")
    datamodule.manifest.write_records(output_dir)
    trained_split = record.get("split") or {}
    overlap = scored_training_files(datamodule, split, trained_split)
    check_training_overlap(
        overlap, split, datamodule, trained_split, ckpt_path, bool(cfg.get("allow_train_overlap"))
    )
    warn_of_training_overlap(overlap, ckpt_path)
    if cfg.batch_size < 1:
        raise InvalidSetting(f"batch_size={cfg.batch_size} must be at least 1")
    device = resolve_device(cfg.device)
    log.info("scoring split %s of %s (%s) on %s", split, datamodule.manifest.root, source, device)
    what = "all files" if split == "all" else f"the {split} split"
    title = " | ".join(
        filter(
            None,
            [
                f"Evaluation: {Path(ckpt_path).name} on {what} of {datamodule.manifest.root}",
                overlap_warning(overlap),
            ],
        )
    )
    summary = {
        "checkpoint": ckpt_path,
        "data_source": source,
        "data_root": datamodule.manifest.root,
        "split": split,
        "split_method": datamodule.splitter.name,
        "protocol_card": protocol_card(datamodule.manifest),
        "training_overlap": {k: overlap[k] for k in ("status", "count", "train", "val")},
        "allow_train_overlap": bool(cfg.get("allow_train_overlap")),
        "device": str(device),
    }
    if not module.model.task.has_categories:  # task=dimensional: CCC, r and MAE per dimension only
        dimensions = split_dimension_report(module, datamodule, split, device, cfg.batch_size, bootstrap)
        print_dimension_report(dimensions, title)
        paths = write_dimension_report(dimensions, output_dir)
        summary.update(
            dimensions=dimensions.summary(),
            files_written={k: str(v) for k, v in paths.items()},
            seconds=time.perf_counter() - started,
        )
        (output_dir / "eval.json").write_text(json.dumps(summary, indent=2))
        log.info("report written to %s", output_dir)
        return None, summary
    collector = tested_split(module, datamodule, split, device, cfg.batch_size, bootstrap)
    report = collector.report

    same_files = same_test_files(trained_split, report.files) if split == "test" else None
    if same_files is False and source != "command line":
        log.warning(
            "the test files differ from those held out when the model was trained (%s files then, %d now): "
            "the corpus at %s or the split settings changed; scores are not comparable with the training run's",
            trained_split.get("sizes", {}).get("test"),
            len(report.files),
            datamodule.manifest.root,
        )
    print_report(report, title=title)
    card = summary["protocol_card"]
    paths = write_report(report, output_dir, title=title, protocol=card)
    if report.dimensions is not None:  # a task=multitask checkpoint: CCC, r and MAE per dimension
        print_dimension_report(report.dimensions, title)
        paths.update(write_dimension_report(report.dimensions, output_dir))
    # a corpus with annotator votes: the agreement section of the training run's test report
    section = agreement_section(
        report,
        datamodule,
        collector.rows,
        output_dir,
        cfg.get("agreement"),
        f"Confidence against annotator agreement ({what})",
    )
    if section is None:
        print("annotator agreement: none (the corpus has no annotator votes)")
    else:
        print(agreement_text(section[0]))
        paths.update(section[1])
    summary |= {
        "same_test_files_as_training": same_files,
        "metrics": report.metrics,
        "intervals": report.intervals,
        "calibration": report.calibration,
        "gender_gap": report.gender_gap,
        "speakers": report.speakers,
        # the conformal sets' coverage and size (calibration=conformal checkpoints), {} without
        "conformal": report.conformal,
        "dimensions": report.dimensions.summary() if report.dimensions is not None else None,
        # JS divergence, accuracy by annotator agreement, abstention (None: the corpus has no votes)
        "agreement": section[0] if section is not None else None,
        "files_written": {k: str(v) for k, v in paths.items()},
        "seconds": time.perf_counter() - started,
    }
    if cfg.get("robustness"):
        from ser_lightning.reporting.robustness_report import robustness_report

        table, written = robustness_report(
            model, datamodule, split, device, cfg.batch_size, to_plain(cfg.robustness), output_dir, title
        )
        summary["robustness"] = table.to_dict(orient="records")
        summary["files_written"].update(written)
    if cfg.get("explain"):
        from ser_lightning.reporting.explanations import ExplainSettings, explain

        settings = ExplainSettings.from_config(to_plain(cfg.get("explain_settings")))
        summary["explanations"] = explain(model, datamodule, split, device, settings, output_dir)
    (output_dir / "eval.json").write_text(json.dumps(summary, indent=2))
    log.info("report written to %s", output_dir)
    return report, summary


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
@exits_on_user_mistake
def main(cfg: DictConfig) -> float:
    """Run `evaluate` as the Hydra entry point.

    Returns:
        The test UA (a task=dimensional checkpoint's mean CCC), the value a Hydra sweep over eval optimises.
    """
    OmegaConf.resolve(cfg.paths)
    report, summary = evaluate(cfg)
    return report.metrics["ua"] if report is not None else summary["dimensions"]["ccc"]


if __name__ == "__main__":
    main()
