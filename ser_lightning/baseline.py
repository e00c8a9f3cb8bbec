"""The field's reference baselines: `python -m ser_lightning.baseline classifier=svm features=egemaps`.

openSMILE functionals (`features=egemaps` or `compare`) into a scikit-learn classifier
(`classifier=svm|logreg|random_forest`), on the same manifest, split, leakage check, feature
cache, evaluation report (with speaker-bootstrap intervals) and protocol card as `train`:

1. the data module is built and set up as for training (`data.*`), its split checked for
   leakage; the features come from the feature cache (built once, reused after);
2. `features.normalize` scales them: `corpus` (a StandardScaler fitted on the train split, in
   the pipeline), `speaker` (each speaker z-scored with its own statistics, test speakers'
   unlabelled clips included; recorded in the protocol card and its hash) or `none`;
3. the pipeline is fitted on the train split and scored on val (the value returned, which a
   Hydra sweep over `classifier.*` optimises) and test (the report files, as `eval` writes them);
4. the model is saved with skops (`model.skops`, loaded with its types checked, never a pickle);
5. permutation importance of every feature, for UA and each class's recall, on the test split:
   `importance.csv` and `importance.png` (the top features).

`baseline.json` in the run folder holds the scores, intervals, protocol card, leakage check,
feature cost per clip and the paths written. docs/baselines.md has the commands.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from ser_lightning.baselines.classifiers import (
    NORMALIZE,
    build_pipeline,
    class_probabilities,
    speaker_normalize,
)
from ser_lightning.baselines.importance import importance_table, plot_importance
from ser_lightning.baselines.model_files import save_model
from ser_lightning.data.corpora import check_data_root
from ser_lightning.data.leakage import clip_table, speaker_note
from ser_lightning.data.protocol_card import protocol_card
from ser_lightning.data.run_data import prepare_for_training
from ser_lightning.data.utterances import relative_paths
from ser_lightning.reporting.evaluation import evaluation_report
from ser_lightning.reporting.evaluation_console import print_report
from ser_lightning.reporting.evaluation_files import write_report
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.utils.config import CONFIG_DIR, to_plain
from ser_lightning.utils.errors import InvalidSetting, exits_on_user_mistake

log = logging.getLogger("ser_lightning.baseline")

NORMALIZATION_NOTES = {
    "none": "none: the features as openSMILE gives them",
    "corpus": "corpus: per-feature mean and standard deviation of the train split",
    "speaker": "speaker: each speaker's clips z-scored with that speaker's own statistics, "
    "test speakers' unlabelled clips included",
}


def feature_normalization(normalize: str) -> dict:
    """The protocol card's record of the feature scaling.

    Args:
        normalize: `features.normalize`.

    Returns:
        `normalize`, whether the scaling read the (unlabelled) test clips, and a sentence.
    """
    return {
        "normalize": normalize,
        "uses_unlabelled_test_clips": normalize == "speaker",
        "description": NORMALIZATION_NOTES[normalize],
    }


def _vectors(features: np.ndarray) -> np.ndarray:
    """Flatten cached features `(N, 1, D, 1)` (or a ragged cache of one frame per clip) to `(N, D)`.

    Returns:
        One float64 row per clip.

    Raises:
        InvalidSetting: If the features have frames (a sequence per clip, not one vector).
    """
    if hasattr(features, "lengths"):  # whole clips (data.duration=null): a ragged cache, frames as rows
        if not (np.asarray(features.lengths) == 1).all():
            raise InvalidSetting(
                "the baselines take one feature vector per clip, but these features have frames; "
                "set features.level=functionals (features=egemaps or compare)"
            )
        return np.asarray(features.data, dtype=np.float64).reshape(len(features), -1)
    if features.ndim != 4 or features.shape[-1] != 1:
        raise InvalidSetting(
            f"the baselines take one feature vector per clip, but these features have shape "
            f"{tuple(features.shape[1:])}; set features.level=functionals (features=egemaps or compare)"
        )
    return np.asarray(features, dtype=np.float64).reshape(len(features), -1)


def run_baseline(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit and score one classical baseline as the config says, writing its files.

    Args:
        cfg: The composed baseline config (`data`, `features`, `classifier`, `importance`, ...).

    Returns:
        The summary written as baseline.json, and the run's objects (`pipeline`, `report`,
        `datamodule`, `importance`).

    Raises:
        InvalidSetting: If `features.normalize` is not none, corpus or speaker.
    """
    started = time.perf_counter()
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_data_root(cfg.data)
    normalize = str(cfg.features.get("normalize", "none"))
    if normalize not in NORMALIZE:
        raise InvalidSetting(f"features.normalize={normalize!r} must be one of {NORMALIZE}")
    # The extractor caches raw values; the baseline scales them itself (corpus: in the pipeline).
    features_cfg = to_plain(cfg.features)
    extractor = instantiate({**features_cfg, "normalize": "none"})
    datamodule = instantiate(to_plain(cfg.data), features=extractor)
    extracting = time.perf_counter()
    leakage = prepare_for_training(datamodule, output_dir, write_records=True)
    cache_seconds = time.perf_counter() - extracting
    manifest = datamodule.manifest
    vectors = _vectors(datamodule.arrays.features)
    if normalize == "speaker":
        vectors = speaker_normalize(vectors, manifest.table["actor"])
    labels = manifest.labels.astype(np.int64)
    rows = {name: np.sort(manifest.indices[name]) for name in ("train", "val", "test")}

    pipeline = build_pipeline(to_plain(cfg.classifier), normalize, int(cfg.seed))
    fit_started = time.perf_counter()
    pipeline.fit(vectors[rows["train"]], labels[rows["train"]])
    fit_seconds = time.perf_counter() - fit_started
    names = list(datamodule.label_names)
    bootstrap = BootstrapSettings(**to_plain(cfg.get("bootstrap") or {}))
    reports = {}
    for split in ("val", "test"):
        if len(rows[split]) == 0:
            continue
        table = manifest.table.iloc[rows[split]]
        reports[split] = evaluation_report(
            # relative to the corpus root, as a network's test report lists them, so the two pair up
            files=relative_paths(table, manifest.root).tolist(),
            y_true=labels[rows[split]],
            probabilities=class_probabilities(pipeline, vectors[rows[split]], len(names)),
            labels=names,
            clips=clip_table(table),
            bootstrap=bootstrap,
            speakers=speaker_note(manifest) if split == "test" else None,
        )
    report = reports["test"]
    classifier = str(cfg.classifier.name)
    title = f"Baseline: {features_cfg.get('feature_set')} + {classifier} on the test split of {manifest.root}"
    print_report(report, title=title)
    card = protocol_card(manifest, feature_normalization=feature_normalization(normalize))
    paths = write_report(report, output_dir / "test", title=title, protocol=card)
    feature_names = list(getattr(extractor, "names", [f"feature_{i}" for i in range(vectors.shape[1])]))
    info = {
        "labels": names,
        "features": features_cfg,
        "feature_names": feature_names,
        "normalize": normalize,
        "classifier": to_plain(cfg.classifier),
        "audio": datamodule.audio.to_dict(),
    }
    paths["model"] = save_model(pipeline, output_dir, info)

    importance = None
    if cfg.importance.enabled:
        importance = importance_table(
            pipeline,
            vectors[rows["test"]],
            labels[rows["test"]],
            feature_names,
            names,
            n_repeats=int(cfg.importance.n_repeats),
            seed=int(cfg.seed),
            n_jobs=cfg.importance.get("n_jobs"),
        )
        paths["importance"] = output_dir / "importance.csv"
        importance.to_csv(paths["importance"], index=False, float_format="%.6f")
        paths["importance_png"] = plot_importance(
            importance, output_dir / "importance.png", int(cfg.importance.top), title
        )

    num_clips = len(manifest.table)
    summary = {
        "classifier": to_plain(cfg.classifier),
        "features": features_cfg,
        "data_root": manifest.root,
        "protocol_card": card,
        "leakage": leakage.to_dict(),
        "split_sizes": manifest.split_sizes,
        "metrics": {split: r.metrics for split, r in reports.items()},
        "intervals": report.intervals,
        "calibration": report.calibration,
        "speakers": report.speakers,
        "cache_events": list(datamodule.cache_events),
        "cost": {
            "clips": num_clips,
            "prepare_seconds": cache_seconds,
            "prepare_seconds_per_clip": cache_seconds / max(num_clips, 1),
            "fit_seconds": fit_seconds,
        },
        "files_written": {k: str(v) for k, v in paths.items()},
        "seconds": time.perf_counter() - started,
    }
    (output_dir / "baseline.json").write_text(json.dumps(summary, indent=2, default=str))
    log.info("baseline written to %s", output_dir)
    objects = {"pipeline": pipeline, "report": report, "datamodule": datamodule, "importance": importance}
    return summary, objects


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="baseline")
@exits_on_user_mistake
def main(cfg: DictConfig) -> float:
    """Run `run_baseline` as the Hydra entry point.

    Returns:
        The validation UA (the test UA when there is no val split), which a sweep optimises.
    """
    OmegaConf.resolve(cfg.paths)
    with open_dict(cfg):
        cfg.task_name = cfg.get("task_name", "baseline")
    summary, _ = run_baseline(cfg)
    metrics = summary["metrics"]
    return float((metrics.get("val") or metrics["test"])["ua"])


if __name__ == "__main__":
    main()
