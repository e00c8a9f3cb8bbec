"""Test a checkpoint and write its report: `python -m ser_lightning.eval ckpt_path=... [overrides]`.

By default the model is scored on the test split of the data config it was trained on (kept in
the checkpoint), re-created from the same corpus, split settings and seed. `data=<group>` (and
`data.root=...`) scores it on another corpus instead, `+data.key=value` changes one setting
of the checkpoint's own data config, and `split=all` scores every file of the corpus
(`data.split=test_only`).

Whatever the data config, its audio settings and label set are replaced by the checkpoint's and
its feature extractor is the checkpoint's, so the model sees exactly the inputs it was trained on
(and the caches are shared with training runs of the same settings).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ser_lightning.checkpoint import (
    checkpoint_record,
    files_fingerprint,
    module_from_checkpoint,
    read_checkpoint,
)
from ser_lightning.data.utterances import relative_paths
from ser_lightning.inference.predictor import Predictor
from ser_lightning.reporting.evaluation import (
    EvaluationReport,
    evaluation_report,
    print_report,
    write_report,
)
from ser_lightning.utils.config import CONFIG_DIR, silence_pytree_notice, to_plain
from ser_lightning.utils.errors import exits_on_user_mistake

log = logging.getLogger("ser_lightning.eval")

silence_pytree_notice()

EVAL_SPLITS = ("test", "val", "train", "all")
AUDIO_KEYS = ("sample_rate", "duration", "offset", "crop", "peak_normalize")


def eval_data_config(chosen: dict | None, record: dict, ckpt_path: str) -> tuple[dict, str]:
    """The data config to evaluate on, and where it came from.

    A full data config (with `_target_`) is used as given; a partial one (`+data.root=...`)
    is merged onto the checkpoint's own.
    """
    if chosen and "_target_" in chosen:
        return dict(chosen), "command line"
    own = record.get("data")
    if not own:
        raise ValueError(
            f"checkpoint {ckpt_path!r} carries no data config (it predates checkpoint format 1); "
            "choose the data to evaluate on: data=<group> data.root=PATH, e.g. data=ravdess data.root=/data/ravdess"
        )
    merged = OmegaConf.to_container(OmegaConf.merge(own, chosen or {}), resolve=True)
    return merged, "checkpoint" + (" with overrides" if chosen else "")


def build_eval_datamodule(data: dict, module, split: str):
    """Instantiate a data module from any data config with the checkpoint's audio and features."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split={split!r} must be one of {EVAL_SPLITS}")
    data = dict(data)
    # The model's label order decides the class indices; files of other emotions are left out
    # (and counted by the data module), emotions the corpus lacks just have no support.
    fixed = {**module.audio.to_dict(), "labels": list(module.labels)}
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
    return instantiate(data, features=module.features)


def split_report(predictor: Predictor, datamodule, split: str) -> EvaluationReport:
    """Score one split of a set-up data module (`all` = its whole corpus)."""
    name = "test" if split == "all" else split
    if len(datamodule.indices[name]) == 0:
        raise ValueError(
            f"the {name} split of data.split={datamodule.splitter.name} holds no files of {datamodule.root}; "
            "choose split=test or split=all"
        )
    if tuple(datamodule.label_names) != tuple(predictor.labels):
        raise ValueError(
            f"the data's labels {list(datamodule.label_names)} differ from the model's {predictor.labels}"
        )
    rows, labels, probabilities = predictor.dataset_probabilities(datamodule.dataset(name))
    files = relative_paths(datamodule.table.iloc[rows], datamodule.root).tolist()
    return evaluation_report(files, labels, probabilities, predictor.labels)


def test_report(module, datamodule, directory: str | Path) -> EvaluationReport:
    """The evaluation report of a just-tested module on its data module's test split."""
    report = split_report(Predictor(module), datamodule, "test")
    title = f"Test report: the test split ({datamodule.splitter.name}) of {datamodule.root}"
    print_report(report, title=title)
    write_report(report, directory, title=title)
    return report


def evaluate(cfg: DictConfig) -> tuple[EvaluationReport, dict[str, Any]]:
    """Load, score, report; returns the report and the summary written as eval.json."""
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = str(cfg.ckpt_path)
    checkpoint = read_checkpoint(ckpt_path)
    record = checkpoint_record(checkpoint)
    module = module_from_checkpoint(checkpoint, ckpt_path)
    data, source = eval_data_config(to_plain(cfg.get("data")), record, ckpt_path)
    split = str(cfg.split)

    # Caches are built on the CPU with the checkpoint's feature extractor before it moves.
    datamodule = build_eval_datamodule(data, module, split)
    datamodule.prepare_data()
    datamodule.setup("test")
    datamodule.write_records(output_dir)
    predictor = Predictor(module, device=cfg.device, batch_size=cfg.batch_size)
    log.info("scoring split %s of %s (%s) on %s", split, datamodule.root, source, predictor.device)
    report = split_report(predictor, datamodule, split)

    same_test_files = None
    trained_split = record.get("split") or {}
    if split == "test" and source == "checkpoint" and trained_split.get("test_files_sha256"):
        same_test_files = files_fingerprint(report.files) == trained_split["test_files_sha256"]
        if not same_test_files:
            log.warning(
                "the test files differ from those held out when the model was trained (%s files then, %d now): "
                "the corpus at %s changed; scores are not comparable with the training run's",
                trained_split.get("sizes", {}).get("test"),
                len(report.files),
                datamodule.root,
            )
    what = "all files" if split == "all" else f"the {split} split"
    title = f"Evaluation: {Path(ckpt_path).name} on {what} of {datamodule.root}"
    print_report(report, title=title)
    paths = write_report(report, output_dir, title=title)
    summary = {
        "checkpoint": ckpt_path,
        "data_source": source,
        "data_root": datamodule.root,
        "split": split,
        "split_method": datamodule.splitter.name,
        "same_test_files_as_training": same_test_files,
        "device": str(predictor.device),
        "metrics": report.metrics,
        "files_written": {k: str(v) for k, v in paths.items()},
        "seconds": time.perf_counter() - started,
    }
    (output_dir / "eval.json").write_text(json.dumps(summary, indent=2))
    log.info("report written to %s", output_dir)
    return report, summary


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
@exits_on_user_mistake
def main(cfg: DictConfig) -> float:
    OmegaConf.resolve(cfg.paths)
    report, _ = evaluate(cfg)
    return report.metrics["ua"]


if __name__ == "__main__":
    main()
