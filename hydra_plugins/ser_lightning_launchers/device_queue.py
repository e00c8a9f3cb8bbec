"""Run commands on a list of GPUs: each job on GPUs of its own, the rest queued until enough free up.

- Jobs start in the order given (first in, first out): the next job waits until as many
  devices as it needs are free, then takes the first free ones of the list.
- Each job is a process of its own (a new process session, so that a DDP job's ranks stop with
  it), seeing only its devices through `CUDA_VISIBLE_DEVICES`; what it prints goes to a log
  file in its folder.
- A job that outlives `timeout_s` is stopped (SIGTERM, then SIGKILL) and recorded as timed out.
- Ctrl-C stops every running job before the interrupt goes on.

Nothing here needs a GPU: the device names are only handed out, so a list such as
`["0", "1"]` runs the same queue on a CPU machine.
"""

import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# No `from __future__ import annotations`: Hydra's plugin scan executes this module outside
# sys.modules, where dataclasses cannot resolve string annotations.

log = logging.getLogger(__name__)

CONSOLE_LOG = "console.log"
# how long a stopped job gets between SIGTERM and SIGKILL
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class QueuedJob:
    """A job waiting for devices: its command, folder and how many devices it needs."""

    number: int
    command: Sequence[str]
    job_dir: Path
    devices_needed: int
    description: str = ""
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class FinishedJob:
    """A job that ran: the devices it had, when it started and ended, and how it ended."""

    job: QueuedJob
    devices: tuple[str, ...]
    started: float
    ended: float
    returncode: int | None
    timed_out: bool = False

    @property
    def seconds(self) -> float:
        """How long the job ran."""
        return self.ended - self.started

    @property
    def succeeded(self) -> bool:
        """Whether the job exited with 0 within its time."""
        return self.returncode == 0 and not self.timed_out


@dataclass
class _Running:
    job: QueuedJob
    devices: tuple[str, ...]
    process: subprocess.Popen
    started: float
    log_file: object


def _stop(process: subprocess.Popen) -> None:
    """Stop a job's whole process group: SIGTERM, then SIGKILL after STOP_GRACE_S."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def format_seconds(seconds: float) -> str:
    """Say a duration in words.

    Args:
        seconds: the duration.

    Returns:
        `M min S s` from a minute on, else `S.s s`.
    """
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{seconds:.1f} s"


class DeviceQueue:
    """Hands out `devices` to jobs, `devices_needed` each, queuing the jobs that do not fit yet."""

    def __init__(
        self,
        devices: Sequence[str],
        timeout_s: float | None = None,
        poll_s: float = 0.2,
        on_event: Callable[[str], None] = log.info,
    ):
        if not devices:
            raise ValueError("the device queue needs at least one device")
        if len(set(devices)) != len(devices):
            raise ValueError(f"the device list names a device twice: {list(devices)}")
        self.devices = tuple(str(d) for d in devices)
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self.on_event = on_event

    def check(self, jobs: Sequence[QueuedJob]) -> None:
        """Refuse, before anything starts, a job that could never run.

        Args:
            jobs: the jobs to run.

        Raises:
            ValueError: a job needs no device, or more devices than the queue has.
        """
        for job in jobs:
            if job.devices_needed < 1:
                raise ValueError(
                    f"job #{job.number} asks for {job.devices_needed} devices; it needs at least 1"
                )
            if job.devices_needed > len(self.devices):
                raise ValueError(
                    f"job #{job.number} ({job.description}) needs {job.devices_needed} GPUs, but the queue has "
                    f"{len(self.devices)} ({', '.join(self.devices)}): lower the job's trainer.devices or name "
                    f"more devices"
                )

    def run(self, jobs: Sequence[QueuedJob]) -> list[FinishedJob]:
        """Run every job, each as soon as enough devices are free.

        Args:
            jobs: the jobs, in the order they start.

        Returns:
            The finished jobs, in the order given.
        """
        self.check(jobs)
        pending = deque(jobs)
        free = list(self.devices)
        running: list[_Running] = []
        finished: dict[int, FinishedJob] = {}
        try:
            while pending or running:
                while pending and pending[0].devices_needed <= len(free):
                    job = pending.popleft()
                    taken, free = tuple(free[: job.devices_needed]), free[job.devices_needed :]
                    # in the list before anything else can raise, so that an interrupt stops it too
                    running.append(self._start(job, taken))
                    where = "GPU" if len(taken) == 1 else "GPUs"
                    self.on_event(
                        f"#{job.number} started on {where} {','.join(taken)}: {job.description}"
                        + (f" ({len(pending)} queued)" if pending else "")
                    )
                still_running = []
                for entry in running:
                    done = self._poll(entry)
                    if done is None:
                        still_running.append(entry)
                        continue
                    finished[entry.job.number] = done
                    free = [d for d in self.devices if d in free or d in entry.devices]
                any_finished = len(still_running) != len(running)
                running = still_running
                if not any_finished:  # else the freed devices may start the next job at once
                    time.sleep(self.poll_s)
        except BaseException:
            for entry in running:
                _stop(entry.process)
                entry.log_file.close()
            if running:
                self.on_event(
                    f"stopped {len(running)} running job(s): "
                    + ", ".join(f"#{e.job.number}" for e in running)
                )
            raise
        return [finished[job.number] for job in jobs]

    def _start(self, job: QueuedJob, devices: tuple[str, ...]) -> _Running:
        job.job_dir.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, **job.environment, "CUDA_VISIBLE_DEVICES": ",".join(devices)}
        log_file = open(job.job_dir / CONSOLE_LOG, "ab")  # noqa: SIM115 - closed when the job ends
        process = subprocess.Popen(
            list(job.command),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,
        )
        return _Running(job, devices, process, time.time(), log_file)

    def _poll(self, entry: _Running) -> FinishedJob | None:
        returncode = entry.process.poll()
        timed_out = False
        if returncode is None:
            if self.timeout_s is None or time.time() - entry.started < self.timeout_s:
                return None
            _stop(entry.process)
            returncode, timed_out = entry.process.returncode, True
        entry.log_file.close()
        done = FinishedJob(entry.job, entry.devices, entry.started, time.time(), returncode, timed_out)
        console = entry.job.job_dir / CONSOLE_LOG
        if done.succeeded:
            self.on_event(f"#{entry.job.number} done in {format_seconds(done.seconds)}")
        elif timed_out:
            self.on_event(
                f"#{entry.job.number} timed out after {format_seconds(done.seconds)} and was stopped: {console}"
            )
        else:
            self.on_event(
                f"#{entry.job.number} exited with {returncode} after {format_seconds(done.seconds)}: {console}"
            )
        return done
