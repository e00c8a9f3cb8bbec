"""One Hydra job's life in a sweep: its status record and its DDP child processes.

- Every job writes `job_status.json` (ok / skipped / failed, with the error) into its run
  directory, so a sweep summary can list what failed and why.
- In a grid sweep (Hydra's basic sweeper) a failing job is recorded and the sweep goes on;
  the basic sweeper would otherwise re-raise at the end and fail the whole multirun.
  Optuna sweeps re-raise: the Optuna sweeper records the trial as failed and carries on up
  to its `max_failure_rate`.
- Lightning's DDP re-launches the script for ranks > 0 with `sys.argv` plus
  `hydra.run.dir=<HydraConfig run.dir>`. Inside a multirun, argv still holds `-m` and the
  sweep lists (each child would start a sweep of its own) and run.dir is not the job's folder
  (each child would write into a second one). `pin_ddp_children_to_this_job` fixes both.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict, read_write

from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

STATUS_FILE = "job_status.json"
# Set by launchers that run each job of a sweep as a process of its own (hydra/launcher=gpus):
# the job is then a single run of Hydra's, and this names the sweep it belongs to.
SWEEP_DIR_VARIABLE = "SER_LIGHTNING_SWEEP_DIR"


class StartupError(Exception):
    """A job that could not start (an impossible combination, a config mistake): skipped, not failed."""


def is_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (`-m`).

    Returns:
        True inside a multirun job; False in a single run or outside Hydra.
    """
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweeper_is_basic(hydra_cfg: DictConfig | None = None) -> bool:
    """Whether the sweep is a grid (Hydra's basic sweeper); `hydra_cfg` defaults to this job's.

    Returns:
        True when the sweeper's `_target_` is Hydra's BasicSweeper; False for other sweepers
        or outside Hydra.
    """
    if hydra_cfg is None:
        if not HydraConfig.initialized():
            return False
        hydra_cfg = HydraConfig.get()
    return "BasicSweeper" in str(hydra_cfg.sweeper.get("_target_", ""))


def sweep_dir() -> Path | None:
    """The sweep folder this job belongs to.

    Returns:
        Hydra's sweep dir in a multirun, else the folder named by `SER_LIGHTNING_SWEEP_DIR`
        (a launcher that runs each job as a process of its own), else None for a single run.
    """
    if is_multirun():
        return Path(HydraConfig.get().sweep.dir)
    named = os.environ.get(SWEEP_DIR_VARIABLE)
    return Path(named) if named else None


def pin_ddp_children_to_this_job() -> None:
    """Make Lightning's DDP children re-run exactly this job, in this job's folder."""
    if not is_multirun():
        return
    hydra_cfg = HydraConfig.get()
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


def read_status(job_dir: str | Path) -> dict:
    """A job folder's status record (what write_status wrote), {} where the job left none.

    Returns:
        The record as a dict, or {} when the folder has no status file.

    Raises:
        InvalidSetting: If the file is JSON but not an object (a ValueError, naming the file).
    """
    path = Path(job_dir) / STATUS_FILE
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    if not isinstance(record, dict):
        raise InvalidSetting(f"{path} is not a job status record (a JSON object)")
    return record


def write_status(
    output_dir: str | Path,
    status: str,
    seconds: float,
    error: BaseException | None = None,
    overrides: list[str] | None = None,
    **extra: object,
) -> Path:
    """Write a job's status record (`job_status.json`) into its folder.

    Args:
        output_dir: The job's run directory (created if missing).
        status: "ok", "skipped" or "failed".
        seconds: How long the job ran.
        error: The error that ended the job, stored with its traceback.
        overrides: The job's command-line overrides; defaults to Hydra's task overrides
            when Hydra is initialised.
        **extra: Further JSON-serialisable fields (e.g. `result`).

    Returns:
        The path of the written file.
    """
    record = {"status": status, "seconds": round(seconds, 2), **extra}
    if error is not None:
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = "".join(traceback.format_exception(error))
    if overrides is not None:
        record["overrides"] = list(overrides)
    elif HydraConfig.initialized():
        record["overrides"] = list(HydraConfig.get().overrides.task)
    path = Path(output_dir) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str))
    return path


@contextmanager
def job_record(output_dir: str | Path, is_rank_zero: bool = True) -> Iterator[dict]:
    """Record the job's outcome; in a grid sweep swallow a failure so the sweep goes on.

    Args:
        output_dir: The job's run directory, where `job_status.json` is written.
        is_rank_zero: Whether this process writes the record (only rank zero does).

    Yields:
        A dict; the body may put `result` in it. After a swallowed failure `result` is NaN.
    """
    started = time.perf_counter()
    state: dict = {"result": None}
    try:
        yield state
    except Exception as err:  # noqa: BLE001 - every failure is recorded before deciding to re-raise
        status = "skipped" if isinstance(err, StartupError) else "failed"
        if is_rank_zero:
            write_status(output_dir, status, time.perf_counter() - started, err)
        if is_multirun() and sweeper_is_basic():
            log.error(
                "job %s: %s (recorded in %s; the sweep goes on)", status, err, Path(output_dir) / STATUS_FILE
            )
            state["result"] = float("nan")
            return
        raise
    else:
        if is_rank_zero:
            write_status(output_dir, "ok", time.perf_counter() - started, result=state.get("result"))


# Variables Lightning's DDP launcher writes into the launching process's own environment.
DDP_LAUNCH_VARIABLES = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "NODE_RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "RANK",
    "GROUP_RANK",
)


@contextmanager
def distributed_job_scope() -> Iterator[None]:
    """Leave no DDP state behind for the next job of a multirun in this process.

    Lightning's launcher sets LOCAL_RANK, WORLD_SIZE, MASTER_PORT, ... in the launching
    process; the next job would read LOCAL_RANK as "ranks are started externally" and wait
    forever for a rank 1 nobody starts. The process group must also be destroyed, or the
    next job reuses one whose other ranks have exited. Both are undone when the job ends.
    """
    import torch.distributed as dist

    saved = {name: os.environ.get(name) for name in DDP_LAUNCH_VARIABLES}
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The metric a sweeper optimises (`optimized_metric`), the job's result.

    Args:
        metrics: the run's logged metrics.
        name: `optimized_metric`; None or empty: no objective.

    Returns:
        The metric's value, or None without a name.

    Raises:
        KeyError: the name is not among the logged metrics (the message lists them).
    """
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} was not logged; logged metrics: {sorted(metrics)}")
    return metrics[name]
