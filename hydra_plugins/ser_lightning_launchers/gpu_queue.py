"""Hydra launcher `gpu_queue`: every sweep job in a fresh process on GPUs of its own, the rest queued.

`-m model=a,b,c,d features=x,y hydra/launcher=gpus` on a machine with 8 GPUs runs 8 jobs at
once, each seeing only its GPU(s) through `CUDA_VISIBLE_DEVICES`; the others wait in order
until enough GPUs are free. A job may take several GPUs (`gpus_per_job`, in the project's
config `${trainer.devices}`, so a DDP job gets as many GPUs as it has ranks).

Each job runs the application's own command line, as if typed for that one job:
`python -m <app> <the job's overrides> hydra.run.dir=<its folder in the sweep>`. A fresh
process per job is what Lightning's DDP needs (it starts the other ranks by running that
command again) and leaves nothing of one job (CUDA context, DDP variables, memory) to the next.

A job tells its result through `job_status.json` in its folder (`status`, `result`, `error`);
where there is none, its exit code decides. As with the in-process launchers, in a grid sweep a
failed job is recorded and the sweep goes on, while other sweepers (Optuna) get the failure.

The queue also runs with no GPU at all when `devices` names them, e.g. `[0, 1]`: the names are
only handed out, which is how the scheduling is tested on a CPU machine.
"""

# No `from __future__ import annotations` here: Hydra's plugin scan executes this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

QUEUE_RECORD = "gpu_queue.json"
# Hydra overrides of the sweep that must not reach a job's own process (it runs one job, here)
SWEEP_ONLY_OVERRIDES = (
    "hydra/launcher",
    "hydra.launcher",
    "hydra/sweeper",
    "hydra.sweeper",
    "hydra.sweep",
    "hydra.mode",
    "hydra.run",
)


@dataclass
class GPUQueueLauncherConf:
    """The `hydra/launcher=gpu_queue` config node: the launcher's settings."""

    _target_: str = "hydra_plugins.ser_lightning_launchers.gpu_queue.GPUQueueLauncher"
    # the GPUs to hand out: null = those this process sees (CUDA_VISIBLE_DEVICES, else every
    # GPU torch finds); or a list of ids, e.g. [0, 1, 2, 3]
    devices: Any | None = None
    # GPUs each job takes (a number, or a list whose length is that number)
    gpus_per_job: Any = 1
    # OMP_NUM_THREADS of each job process: null = the machine's cores / the number of devices
    # (one process per GPU at most); an OMP_NUM_THREADS already set is kept
    threads_per_job: int | None = None
    # stop a job that runs longer (minutes); null = no limit
    timeout_min: float | None = None


ConfigStore.instance().store(
    group="hydra/launcher", name="gpu_queue", node=GPUQueueLauncherConf, provider="ser_lightning"
)


def visible_gpus() -> list[str]:
    """The GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else every GPU torch finds.

    Returns:
        The GPUs' ids, as strings.
    """
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpus_needed(value: Any, number: int) -> int:
    """A job's GPU count from `gpus_per_job` (e.g. its trainer.devices: 2, "2" or [0, 1]).

    Args:
        value: the job's `gpus_per_job`.
        number: the job's number, for the error's message.

    Returns:
        The number of GPUs, at least 1.

    Raises:
        ValueError: the value is not a positive number of GPUs or a list of them.
    """
    if isinstance(value, (list, tuple, ListConfig)):
        return len(value)
    if isinstance(value, bool):
        value = None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and value >= 1:
        return value
    raise ValueError(
        f"job #{number}: hydra.launcher.gpus_per_job is {value!r}, but the GPU queue needs a number of GPUs "
        f"per job: set trainer.devices=N (or hydra.launcher.gpus_per_job=N)"
    )


def quoted_override_value(value: str) -> str:
    """A value in Hydra's override grammar that stays one literal string (paths with spaces, '=' ...).

    Args:
        value: the string.

    Returns:
        The value quoted, its backslashes and quotes escaped.
    """
    # Inside quotes Hydra reads backslashes as escapes only before a quote (or the closing one):
    # those are doubled, and each quote escaped.
    escaped = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value)
    return "'" + escaped + "'"


def app_command() -> list[str]:
    """How this application was started, without its overrides: the head of every job's command.

    Returns:
        The Python interpreter, the module or script, and Hydra's config flags.
    """
    from hydra._internal.utils import get_args_parser

    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is not None:
        head = [sys.executable, "-m", spec.name.removesuffix(".__main__")]
    else:
        head = [sys.executable, os.path.abspath(sys.argv[0])]
    parsed, _ = get_args_parser().parse_known_args(sys.argv[1:])
    for flag, value in (
        ("--config-path", parsed.config_path),
        ("--config-name", parsed.config_name),
        ("--config-dir", parsed.config_dir),
    ):
        if value:
            head += [flag, value]
    return head


def hydra_overrides_for_a_job(hydra_overrides: list[str]) -> list[str]:
    """The sweep's own Hydra overrides (logging, output subdir ...) minus those about sweeping.

    Args:
        hydra_overrides: the sweep's `hydra.overrides.hydra`.

    Returns:
        The overrides each job is started with.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(hydra_overrides))
    return [
        o.input_line
        for o in parsed
        if o.input_line is not None
        and not any(o.key_or_group.startswith(prefix) for prefix in SWEEP_ONLY_OVERRIDES)
    ]


def read_job_status(job_dir: Path) -> dict:
    """The job's own record of how it ended ({} if it left none, or one cut short by its end).

    Args:
        job_dir: the job's folder.

    Returns:
        Its `job_status.json`, or {}.
    """
    from ser_lightning.utils.jobs import read_status

    try:
        return read_status(job_dir)
    except (OSError, ValueError):
        return {}


class GPUQueueLauncher(Launcher):
    """Hydra's launcher that runs each sweep job in a process of its own, on GPUs of its own."""

    def __init__(
        self,
        devices: Any = None,
        gpus_per_job: Any = 1,
        threads_per_job: int | None = None,
        timeout_min: float | None = None,
    ) -> None:
        self.devices = devices
        self.gpus_per_job = gpus_per_job
        self.threads_per_job = threads_per_job
        self.timeout_min = timeout_min
        self.config: DictConfig | None = None
        self.hydra_context = None
        self.task_function = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        """Keep what Hydra hands the launcher before the sweep's batches."""
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def _device_list(self) -> list[str]:
        if self.devices is not None:
            named = (
                self.devices
                if isinstance(self.devices, (list, tuple, ListConfig))
                else str(self.devices).split(",")
            )
            devices = [str(d).strip() for d in named if str(d).strip()]
        else:
            devices = visible_gpus()
        if not devices:
            raise ValueError(
                "hydra/launcher=gpus found no GPU (CUDA_VISIBLE_DEVICES is empty or torch sees none). "
                "On a CPU machine sweep with hydra/launcher=local_parallel; to queue jobs on named devices "
                "anyway, list them: hydra.launcher.devices=[0,1]"
            )
        return devices

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        """Run one batch of the sweep's jobs on the queue and tell Hydra how each ended.

        Args:
            job_overrides: each job's command-line overrides.
            initial_job_idx: the number of the batch's first job.

        Returns:
            One JobReturn per job, in order.
        """
        from ser_lightning.utils.jobs import SWEEP_DIR_VARIABLE, sweeper_is_basic, write_status

        from .device_queue import DeviceQueue, QueuedJob, format_seconds

        assert self.config is not None and self.hydra_context is not None
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        devices = self._device_list()
        head = app_command() + hydra_overrides_for_a_job(list(self.config.hydra.overrides.hydra))
        threads = self.threads_per_job or max(1, (os.cpu_count() or 1) // len(devices))
        environment = {"PYTHONUNBUFFERED": "1", SWEEP_DIR_VARIABLE: str(sweep_dir)}
        if "OMP_NUM_THREADS" not in os.environ:
            environment["OMP_NUM_THREADS"] = str(threads)

        jobs, configs = [], []
        for offset, overrides in enumerate(job_overrides):
            number = initial_job_idx + offset
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = number
                sweep_config.hydra.job.num = number
            job_dir = sweep_dir / str(sweep_config.hydra.sweep.subdir)
            command = [*head, *overrides, "hydra.run.dir=" + quoted_override_value(str(job_dir))]
            needed = gpus_needed(sweep_config.hydra.launcher.gpus_per_job, number)
            description = " ".join(filter_overrides(overrides)) or "(no overrides)"
            jobs.append(QueuedJob(number, command, job_dir, needed, description, environment))
            configs.append(sweep_config)
        if self.devices is None and OmegaConf.select(configs[0], "trainer.accelerator") == "cpu":
            log.warning("the jobs train with trainer.accelerator=cpu: add trainer=gpu to train on the GPUs")

        queue = DeviceQueue(devices, timeout_s=self.timeout_min * 60 if self.timeout_min else None)
        queue.check(jobs)
        at_once = len(devices) // max(job.devices_needed for job in jobs)
        log.info(
            "GPU queue: %d job(s) on %s %s, %d at a time; each job's output goes to <its folder>/console.log",
            len(jobs),
            "GPU" if len(devices) == 1 else "GPUs",
            ",".join(devices),
            at_once,
        )
        finished = queue.run(jobs)

        basic = sweeper_is_basic(self.config.hydra)
        returns, outcomes = [], []
        for done, overrides, sweep_config in zip(finished, job_overrides, configs, strict=True):
            record = read_job_status(done.job.job_dir)
            outcome = record.get("status") or ("ok" if done.succeeded else "failed")
            if not done.succeeded and outcome == "ok":
                outcome = "failed"
            reason = record.get("error") or (
                f"timed out after {format_seconds(done.seconds)}"
                if done.timed_out
                else f"exited with {done.returncode}"
            )
            if outcome != "ok" and not record:
                # died without a word (killed, timed out, out of memory): the report still lists it
                write_status(
                    done.job.job_dir, "failed", done.seconds, RuntimeError(reason), overrides=list(overrides)
                )
            ret = JobReturn(
                overrides=list(overrides),
                cfg=sweep_config,
                hydra_cfg=sweep_config,
                working_dir=str(done.job.job_dir),
                task_name=JobRuntime.instance().get("name"),
            )
            if outcome == "ok":
                ret.status, ret.return_value = JobStatus.COMPLETED, record.get("result")
            elif basic:
                ret.status, ret.return_value = JobStatus.COMPLETED, math.nan
            else:
                ret.status = JobStatus.FAILED
                ret.return_value = RuntimeError(
                    f"job #{done.job.number} {outcome}: {reason} (its output: {done.job.job_dir / 'console.log'})"
                )
            returns.append(ret)
            outcomes.append(
                {
                    "job": done.job.number,
                    "folder": str(done.job.job_dir.relative_to(sweep_dir)),
                    "overrides": list(overrides),
                    "devices": list(done.devices),
                    "status": outcome,
                    "started": round(done.started, 3),
                    "ended": round(done.ended, 3),
                    "seconds": round(done.seconds, 2),
                    "exit_code": done.returncode,
                    "timed_out": done.timed_out,
                }
            )
        self._record(sweep_dir / QUEUE_RECORD, outcomes)
        counts = {s: sum(o["status"] == s for o in outcomes) for s in ("ok", "skipped", "failed")}
        span = max(d.ended for d in finished) - min(d.started for d in finished)
        log.info(
            "GPU queue: %d job(s) in %s: %s; where each ran: %s",
            len(outcomes),
            format_seconds(span),
            ", ".join(f"{n} {s}" for s, n in counts.items() if n),
            sweep_dir / QUEUE_RECORD,
        )
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns

    @staticmethod
    def _record(path: Path, outcomes: list[dict]) -> None:
        """Append this batch to the sweep's record (sweepers such as Optuna launch several batches)."""
        try:
            earlier = json.loads(path.read_text()) if path.exists() else []
        except ValueError:
            earlier = []
        path.write_text(json.dumps([*earlier, *outcomes], indent=2))
