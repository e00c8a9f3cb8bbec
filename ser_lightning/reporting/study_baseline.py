"""A classical baseline row in a study report: `python -m ser_lightning.report SWEEP --baseline egemaps_logreg`.

The named baseline (`BASELINES`: openSMILE features + a scikit-learn classifier, as
`python -m ser_lightning.baseline` runs it) is run once per distinct data setting of the
sweep's finished jobs (their `data` config, read from each job's `.hydra/config.yaml`: corpus,
fold, split seed, ...), through `run_baseline`, into `<out>/baseline/<name>/<job>/` where `<job>`
is the first job with that data setting. A run folder that already holds `baseline.json` is
reused. Each run becomes one more row of the study (`baseline=<name>`; the sweep's own jobs get
`baseline=none`), with the fold and split seed of its job, so that the tables, the speaker
intervals, the protocol check and `--compare` treat it like any other configuration.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from ser_lightning.reporting.study_jobs import (
    HEARD_TEST_CLIPS,
    SPEAKER_INDEPENDENT,
    TEST_CLIPS,
    configuration_columns,
)
from ser_lightning.reporting.study_protocols import PROTOCOL
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

# name -> (features, classifier) of `python -m ser_lightning.baseline`
BASELINES = {
    "egemaps_logreg": ("egemaps", "logreg"),
    "egemaps_svm": ("egemaps", "svm"),
    "compare_svm": ("compare", "svm"),
}
# the study's column naming the baseline of a row ("none": a job of the sweep)
BASELINE = "baseline"
NO_BASELINE = "none"
# the repeat keys a baseline row takes from its job (its data setting); `seed` too, so it pairs
DATA_REPEAT_KEYS = ("seed", "data.fold", "data.split_seed")
# results.csv's columns that are no setting (metrics and notes have a "/")
RECORD_COLUMNS = ("job", "status", "error", "seconds")
# summary metric -> the baseline's split and score (baseline.json's `metrics`)
METRIC_OF = {
    "test/ua": ("test", "ua"),
    "test/acc": ("test", "accuracy"),
    "test/f1": ("test", "macro_f1"),
    "val/ua_best": ("val", "ua"),
}


def baseline_config(name: str, job_config: Path, output_dir: Path) -> DictConfig:
    """The baseline entry point's config for one job's data settings.

    Args:
        name: a key of `BASELINES`.
        job_config: the job's composed config (`<job>/.hydra/config.yaml`).
        output_dir: the baseline run's folder.

    Returns:
        conf/baseline.yaml with the baseline's features and classifier, the job's `data`, `paths`
        and `seed`, outputs in `output_dir` and no permutation importance.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from ser_lightning.utils.config import CONFIG_DIR

    features, classifier = BASELINES[name]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="baseline", overrides=[f"features={features}", f"classifier={classifier}"])
    GlobalHydra.instance().clear()
    job = OmegaConf.load(job_config)
    with open_dict(cfg):
        cfg.paths = job.paths
        cfg.paths.output_dir = str(output_dir)
        cfg.data = job.data
        cfg.seed = job.get("seed", cfg.seed)
        cfg.importance.enabled = False
    return cfg


def _data_key(job_config: Path) -> str:
    job = OmegaConf.load(job_config)
    with open_dict(job):
        job.paths.output_dir = ""  # a Hydra resolver, undefined outside a Hydra run
    return json.dumps(OmegaConf.to_container(job.data, resolve=True), sort_keys=True, default=str)


def _row(run_dir: Path, name: str, job: pd.Series, shared: list[str], summary: dict) -> dict:
    row = {"job": str(run_dir.resolve()), BASELINE: name}
    for key in [*shared, *DATA_REPEAT_KEYS]:
        if key in job.index and not pd.isna(job[key]):
            row[key] = job[key]
    row["status"], row["error"], row["seconds"] = "ok", "", summary.get("seconds", np.nan)
    for metric, (split, score) in METRIC_OF.items():
        value = (summary.get("metrics", {}).get(split) or {}).get(score)
        if value is not None:
            row[metric] = value
    row[PROTOCOL] = (summary.get("protocol_card") or {}).get("hash", "")
    speakers = summary.get("speakers") or {}
    if speakers:
        row[SPEAKER_INDEPENDENT] = bool(speakers.get("speaker_independent"))
        row[HEARD_TEST_CLIPS] = speakers.get("test_clips_with_training_speaker")
        row[TEST_CLIPS] = speakers.get("test_clips")
    return row


def add_baseline(
    jobs: pd.DataFrame,
    sweep_dir: Path,
    out_dir: Path,
    name: str,
    run_baseline: Callable[[DictConfig], Any] | None = None,
) -> pd.DataFrame:
    """Run (or reuse) the named baseline on every data setting of the sweep and add its rows.

    Args:
        jobs: the table of `collect_jobs`.
        sweep_dir: the sweep folder.
        out_dir: the report's folder; the runs go to `<out_dir>/baseline/<name>/<job>/`.
        name: a key of `BASELINES`.
        run_baseline: fits and scores one baseline from its config, writing its run folder
            (`ser_lightning.baseline.run_baseline`, passed in by the entry point, a layer above);
            None: only finished runs are reused.

    Returns:
        `jobs` with a `baseline` column (`none` for the sweep's jobs) and one row per baseline run
        (its `job` is the run's absolute folder).

    Raises:
        InvalidSetting: If the name is unknown, no finished job kept its composed config, or a
            run is missing and no `run_baseline` is given.
    """
    if name not in BASELINES:
        raise InvalidSetting(f"--baseline {name!r}: choose one of {sorted(BASELINES)}")
    if BASELINE in jobs.columns:
        raise InvalidSetting(f"the sweep already has a setting named {BASELINE!r}; cannot add a baseline row")
    done = jobs[jobs["status"] == "ok"]
    firsts: dict[str, pd.Series] = {}
    for _, job in done.iterrows():
        config = Path(sweep_dir) / job["job"] / ".hydra" / "config.yaml"
        if config.is_file():
            firsts.setdefault(_data_key(config), job)
    if not firsts:
        raise InvalidSetting(
            f"--baseline: no finished job of {sweep_dir} kept its composed config (.hydra/config.yaml)"
        )
    # settings the baseline row shares with its job: the data settings and what all jobs share
    varying = set(configuration_columns(jobs))
    settings = [
        c for c in jobs.columns if c not in RECORD_COLUMNS and "/" not in c and not c.startswith("lr-")
    ]
    shared = [c for c in settings if c.startswith("data.") or c not in varying]
    rows = []
    for number, job in enumerate(firsts.values(), start=1):
        run_dir = Path(out_dir) / "baseline" / name / job["job"]
        record = run_dir / "baseline.json"
        if record.is_file():
            print(f"baseline {name} [{number}/{len(firsts)}]: reusing {run_dir}", flush=True)
        else:
            print(
                f"baseline {name} [{number}/{len(firsts)}]: data of job {job['job']} -> {run_dir}", flush=True
            )
            if run_baseline is None:
                raise InvalidSetting(
                    f"the baseline run {run_dir} is missing and no baseline runner was given"
                )
            cfg = baseline_config(name, Path(sweep_dir) / job["job"] / ".hydra" / "config.yaml", run_dir)
            run_baseline(cfg)
        rows.append(_row(run_dir, name, job, shared, json.loads(record.read_text())))
    jobs = jobs.assign(**{BASELINE: NO_BASELINE})
    return pd.concat([jobs, pd.DataFrame(rows)], ignore_index=True)


def baseline_note(name: str, out_dir: Path) -> str:
    """The report's sentence on the baseline row.

    Args:
        name: a key of `BASELINES`.
        out_dir: the report's folder.

    Returns:
        What the baseline is, where its runs are, and what its `val/ua_best` means.
    """
    features, classifier = BASELINES[name]
    return (
        f"`{BASELINE}={name}`: openSMILE {features} functionals + {classifier} (`python -m ser_lightning.baseline "
        f"features={features} classifier={classifier}`), fitted on each job's train split with the job's data "
        f"settings; runs in `{Path(out_dir) / BASELINE / name}`; its val/ua_best is its validation UA. "
        f"The sweep's own jobs are `{BASELINE}={NO_BASELINE}`."
    )
