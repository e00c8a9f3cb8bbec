"""Reading a Hydra multirun for its study report (`ser_lightning.reporting.study`).

It gives one row per job, and each job's per-clip test predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ser_lightning.reporting.agreement import agreement_metrics
from ser_lightning.reporting.intervals import ScoredRun
from ser_lightning.reporting.study_protocols import PROTOCOL
from ser_lightning.utils.jobs import STATUS_FILE, read_status

REPEAT_KEYS = ("seed", "data.fold", "data.split_seed")
PREDICTIONS = Path("test_report") / "predictions.csv"
# where `python -m ser_lightning.baseline` keeps them (its run folder holds baseline.json)
BASELINE_PREDICTIONS = Path("test") / "predictions.csv"
# each job's note on speakers (from summary.json), named with "/" so they never count as settings
SPEAKER_INDEPENDENT = "speakers/independent"
HEARD_TEST_CLIPS = "speakers/test_clips_with_training_speaker"
TEST_CLIPS = "speakers/test_clips"


def _override_pairs(overrides: list[str]) -> dict[str, str]:
    pairs = {}
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        pairs[key] = value
    return pairs


def collect_jobs(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job folder (any folder holding .hydra/overrides.yaml or job_status.json).

    Args:
        sweep_dir: a Hydra multirun folder.

    Returns:
        One row per job: its folder (`job`), overrides, status, error, seconds and the metrics,
        speaker notes and protocol hash of its summary.json.

    Raises:
        FileNotFoundError: `sweep_dir` is not a folder.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {str(sweep_dir)!r} does not exist")
    job_dirs = sorted(
        {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
        | {p.parent for p in sweep_dir.rglob(STATUS_FILE)},
        key=lambda p: (len(p.parts), str(p)),
    )
    rows = []
    for job in job_dirs:
        summary_file = job / "summary.json"
        status = read_status(job)
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = status.get("overrides") or (
            yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        )
        row = {"job": str(job.relative_to(sweep_dir)), **_override_pairs(overrides or [])}
        row["status"] = status.get("status", "ok" if summary_file.is_file() else "unfinished")
        row["error"] = status.get("error", "")
        row["seconds"] = status.get("seconds", np.nan)
        if summary_file.is_file():
            summary = json.loads(summary_file.read_text())
            row.update({k: v for k, v in summary.get("metrics", {}).items()})
            # runs recorded before the agreement scores joined the metrics: from their test results
            agreement = agreement_metrics((summary.get("test_results") or {}).get("agreement"))
            row.update({k: v for k, v in agreement.items() if k not in row})
            row[PROTOCOL] = (summary.get("protocol_card") or {}).get("hash", "")
            speakers = summary.get("speakers") or {}
            if speakers:
                row[SPEAKER_INDEPENDENT] = bool(speakers.get("speaker_independent"))
                row[HEARD_TEST_CLIPS] = speakers.get("test_clips_with_training_speaker")
                row[TEST_CLIPS] = speakers.get("test_clips")
        rows.append(row)
    if not rows:
        raise FileNotFoundError(
            f"no job folders under {str(sweep_dir)!r}: expected Hydra multirun job folders with .hydra/overrides.yaml"
        )
    return pd.DataFrame(rows)


def configuration_columns(jobs: pd.DataFrame) -> list[str]:
    """Override keys that vary across jobs and are not repeats (seeds, folds).

    Args:
        jobs: the table of `collect_jobs`.

    Returns:
        The keys that tell one configuration from another, in column order.
    """
    fixed = {"job", "status", "error", "seconds"}
    candidates = [c for c in jobs.columns if c not in fixed and "/" not in c and not c.startswith("lr-")]
    return [c for c in candidates if c not in REPEAT_KEYS and jobs[c].nunique(dropna=False) > 1]


def scored_run(sweep_dir: Path, job: str) -> ScoredRun | None:
    """A job's per-clip test predictions, or None when it kept none with the clips' speakers.

    Args:
        sweep_dir: the sweep folder.
        job: the job's folder, relative to `sweep_dir`.

    Returns:
        The job's clips, true and predicted classes and speakers, read from
        `test_report/predictions.csv` (`test/predictions.csv` of a baseline run); None when the file or its speaker column is missing.
    """
    path = Path(sweep_dir) / job / PREDICTIONS
    record = Path(sweep_dir) / job / "baseline.json"
    root = None
    if not path.is_file() and record.is_file():  # a classical baseline's run: files under its corpus root
        path = Path(sweep_dir) / job / BASELINE_PREDICTIONS
        root = json.loads(record.read_text()).get("data_root")
    if not path.is_file():
        return None
    frame = pd.read_csv(path, dtype={"speaker": str, "file": str})
    if "speaker" not in frame:
        return None
    if root:  # paths relative to the corpus root, as train's predictions.csv gives them
        prefix = str(root).rstrip("/") + "/"
        frame["file"] = [f[len(prefix) :] if f.startswith(prefix) else f for f in frame["file"]]
    labels = [c[len("prob_") :] for c in frame.columns if c.startswith("prob_")]
    index = {name: k for k, name in enumerate(labels)}
    y_true = frame["true"].map(index).to_numpy()
    y_pred = frame[[f"prob_{name}" for name in labels]].to_numpy().argmax(axis=1)
    return ScoredRun(job, frame["file"].tolist(), y_true, y_pred, frame["speaker"].tolist(), len(labels))
