"""Test a checkpoint and write its report: `python -m ser_lightning.eval ckpt_path=... [overrides]`.

By default the model is scored on the test split of the data config it was trained on (kept in
the checkpoint), re-created from the same corpus, split settings and seed. `data=<group>` (and
`data.root=...`) scores it on another corpus instead, `+data.key=value` changes one setting
of the checkpoint's own data config, and `split=all` scores every file of the corpus
(`data.split=test_only`). `robustness=standard` scores the split again under each corruption of
conf/robustness/standard.yaml (ser_lightning/reporting/robustness.py).

Whatever the data config, its audio settings and label set are replaced by the checkpoint's and
its feature extractor is the checkpoint's, so the model sees exactly the inputs it was trained on
(and the caches are shared with training runs of the same settings).

The checkpoint's data settings are data from a file: `build_data_module` takes them as plain
settings, caches go to this machine's `paths.cache_dir`, and the corpus they name is read only
inside `paths.data_dir` unless the user names it (`+data.root=...`). Files the model was trained
or validated on are listed in eval.json (`training_overlap`, see ser_lightning.data.provenance);
scoring them as test data under a speaker-independent split stops unless `allow_train_overlap=true`.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from ser_lightning.checkpoint import RECORD_KEY, EncoderFiles, read_checkpoint
from ser_lightning.data.datamodule import build_data_module
from ser_lightning.data.leakage import clip_table
from ser_lightning.data.loading import collate_batch
from ser_lightning.data.provenance import (
    check_training_overlap,
    data_settings,
    overlap_warning,
    same_test_files,
    scored_training_files,
    warn_of_training_overlap,
)
from ser_lightning.data.utterances import relative_paths
from ser_lightning.inference.predictor import Predictor, resolve_device
from ser_lightning.module import SERModule
from ser_lightning.reporting.collector import ReportCollector
from ser_lightning.reporting.evaluation import EvaluationReport, evaluation_report, print_report, write_report
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.utils.config import CONFIG_DIR, silence_pytree_notice, to_plain
from ser_lightning.utils.errors import InvalidSetting, exits_on_user_mistake

log = logging.getLogger("ser_lightning.eval")

silence_pytree_notice()

EVAL_SPLITS = ("test", "val", "train", "all")
AUDIO_KEYS = ("sample_rate", "duration", "offset", "crop", "peak_normalize")


def eval_data_config(
    chosen: dict | None, record: dict, ckpt_path: str, paths: Mapping[str, str]
) -> tuple[dict, str]:
    """The data settings to evaluate on (`build_data_module`'s), and where they came from.

    A full data config (`data=<group>`, with `_target_`) is used as given; a partial one
    (`+data.root=...`) is merged onto the checkpoint's own settings. Those are data from a file:
    only `build_data_module`'s settings, its cache folder replaced by this machine's
    `paths.cache_dir`, and the folders it would have eval read must lie in `paths.data_dir`
    unless the user named them (see `check_stored_folders`).
    """
    if chosen and "_target_" in chosen:
        return data_settings(chosen), "command line"
    own = record.get("data")
    if not own:
        raise InvalidSetting(
            f"checkpoint {ckpt_path!r} carries no data settings; choose the data to evaluate on: "
            "data=<group> data.root=PATH, e.g. data=ravdess data.root=/data/ravdess"
        )
    own = stored_data_settings(own, ckpt_path)
    own["cache_dir"] = str(paths["cache_dir"])  # what is written is this machine's choice
    check_stored_folders(own, chosen or {}, ckpt_path, paths["data_dir"])
    merged = OmegaConf.to_container(OmegaConf.merge(own, chosen or {}), resolve=True)
    return merged, "checkpoint" + (" with overrides" if chosen else "")


def stored_data_settings(own: dict, ckpt_path: str) -> dict:
    """The checkpoint's data settings, which `read_checkpoint` has vetted (plain values, no Hydra
    key), if they are all settings of the data config."""
    settings = set(inspect.signature(build_data_module).parameters) - {
        "features",
        "waveform_augmentation",
        "offline_copies",
    }
    unknown = sorted(set(own) - settings)
    if unknown:
        raise InvalidSetting(
            f"checkpoint {ckpt_path!r}: its data config has {unknown}, which this ser_lightning's "
            "data module does not take; evaluate with data=<group> data.root=PATH instead"
        )
    return dict(own)


def check_stored_folders(own: dict, chosen: dict, ckpt_path: str, data_dir: str) -> None:
    """The corpus folder (and a folder corpus's label CSV) a checkpoint names is read only when
    it lies inside this machine's `paths.data_dir`, or when the user names it on the command
    line: a checkpoint must not choose which of the machine's files eval reads."""
    data_dir = Path(data_dir).expanduser().resolve()
    if not isinstance(chosen.get("root") or own.get("root"), str):
        raise InvalidSetting(
            f"checkpoint {ckpt_path!r}: its data config names no corpus folder; pass +data.root=PATH"
        )
    root = Path(chosen.get("root") or own["root"]).expanduser().resolve()
    if "root" not in chosen and not root.is_relative_to(data_dir):
        raise InvalidSetting(
            f"checkpoint {ckpt_path!r} was trained on the corpus at {own['root']!r}, outside this machine's "
            f"data folder paths.data_dir={str(data_dir)!r}; eval reads the folder a checkpoint names only "
            f"inside paths.data_dir. To evaluate on that folder (or a copy), name it yourself: "
            f"python -m ser_lightning.eval ckpt_path={ckpt_path} +data.root={own['root']}"
        )
    csv = (own.get("corpus_options") or {}).get("csv")
    if csv is not None and "csv" not in (chosen.get("corpus_options") or {}):
        where = (root / Path(csv).expanduser()).resolve()
        if not (where.is_relative_to(root) or where.is_relative_to(data_dir)):
            raise InvalidSetting(
                f"checkpoint {ckpt_path!r} names the label CSV data.corpus_options.csv={csv!r}, outside the "
                f"corpus folder {str(root)!r} and paths.data_dir={str(data_dir)!r}; name the CSV yourself: "
                f"+data.corpus_options.csv=PATH"
            )


def build_eval_datamodule(data: dict, model, split: str):
    """A data module of the data settings `data` with the SERModel's audio, labels and features."""
    if split not in EVAL_SPLITS:
        raise InvalidSetting(f"split={split!r} must be one of {EVAL_SPLITS}")
    data = dict(data)
    # The model's label order decides the class indices; files of other emotions are left out
    # (and counted by the data module), emotions the corpus lacks just have no support.
    fixed = {**model.audio.to_dict(), "labels": list(model.labels)}
    replaced = {k: (data[k], v) for k, v in fixed.items() if k in data and data[k] != v}
    if replaced:
        log.info(
            "the checkpoint's settings replace the data config's: %s",
            ", ".join(f"{k} {old} -> {new}" for k, (old, new) in replaced.items()),
        )
    data.update(fixed)
    if split == "all":
        data["split"] = "test_only"
    if "train_input" in data:
        data["train_input"] = "features"  # eval reads cached features for every split
    return build_data_module(features=model.features, **data)


def device_settings(device: torch.device) -> dict[str, Any]:
    """The Trainer's `accelerator` and `devices` that run on one torch device."""
    if device.type == "cuda":
        return {"accelerator": "cuda", "devices": [device.index or 0]}
    return {"accelerator": device.type, "devices": 1}


def split_report(
    module,
    datamodule,
    split: str,
    device: torch.device,
    batch_size: int,
    bootstrap: BootstrapSettings | None = None,
) -> EvaluationReport:
    """Score one split of a set-up data module (`all` = its whole corpus) on `device`.

    The split's clips, in table order, go through `trainer.test` and ReportCollector, the test
    stage of a training run.
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
    return collector.report


def evaluate(cfg: DictConfig) -> tuple[EvaluationReport, dict[str, Any]]:
    """Load, score, report; returns the report and the summary written as eval.json."""
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = str(cfg.ckpt_path)
    checkpoint = read_checkpoint(ckpt_path)
    record = checkpoint[RECORD_KEY]
    # the test stage of training (SERModule, trainer.test and ReportCollector) scores the split
    module = SERModule.from_checkpoint(checkpoint, ckpt_path, encoder_files=EncoderFiles.of_command(cfg))
    model = module.model
    calibration = str(cfg.get("calibration", "checkpoint"))
    if calibration not in ("checkpoint", "none"):
        raise InvalidSetting(f"calibration={calibration!r} must be checkpoint (its temperature) or none")
    if calibration == "none":
        module.set_calibration(None)  # plain softmax probabilities
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
    report = split_report(module, datamodule, split, device, cfg.batch_size, bootstrap)

    same_files = same_test_files(trained_split, report.files) if split == "test" else None
    if same_files is False and source != "command line":
        log.warning(
            "the test files differ from those held out when the model was trained (%s files then, %d now): "
            "the corpus at %s or the split settings changed; scores are not comparable with the training run's",
            trained_split.get("sizes", {}).get("test"),
            len(report.files),
            datamodule.manifest.root,
        )
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
    print_report(report, title=title)
    paths = write_report(report, output_dir, title=title)
    summary = {
        "checkpoint": ckpt_path,
        "data_source": source,
        "data_root": datamodule.manifest.root,
        "split": split,
        "split_method": datamodule.splitter.name,
        "same_test_files_as_training": same_files,
        "training_overlap": {k: overlap[k] for k in ("status", "count", "train", "val")},
        "allow_train_overlap": bool(cfg.get("allow_train_overlap")),
        "device": str(device),
        "metrics": report.metrics,
        "intervals": report.intervals,
        "calibration": report.calibration,
        "gender_gap": report.gender_gap,
        "speakers": report.speakers,
        "files_written": {k: str(v) for k, v in paths.items()},
        "seconds": time.perf_counter() - started,
    }
    if cfg.get("robustness"):
        table, written = robustness_report(
            model, datamodule, split, device, cfg.batch_size, to_plain(cfg.robustness), output_dir, title
        )
        summary["robustness"] = table.to_dict(orient="records")
        summary["files_written"].update(written)
    (output_dir / "eval.json").write_text(json.dumps(summary, indent=2))
    log.info("report written to %s", output_dir)
    return report, summary


def robustness_report(
    model,
    datamodule,
    split: str,
    device: torch.device,
    batch_size: int,
    settings: dict,
    output_dir: Path,
    title: str,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Score the split's clips clean and under each condition of `settings`; write
    robustness.csv and robustness.png, print the table."""
    from rich.console import Console
    from rich.table import Table

    from ser_lightning.reporting.robustness import plot_robustness, robustness_table, standard_conditions

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


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
@exits_on_user_mistake
def main(cfg: DictConfig) -> float:
    OmegaConf.resolve(cfg.paths)
    report, _ = evaluate(cfg)
    return report.metrics["ua"]


if __name__ == "__main__":
    main()
