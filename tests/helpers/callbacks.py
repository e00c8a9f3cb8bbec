"""Callbacks that interrupt a training run, the hard way or with a requeue signal, for the resumption tests."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytorch_lightning as pl


class KillAtStep(pl.Callback):
    """SIGKILL this process when training reaches `step`: no cleanup, no final checkpoint."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SignalAtStep(pl.Callback):
    """Send this process `signal_name` when training reaches `step` (a requeue signal, for the tests);
    with `rank`, only that DDP rank's process gets it."""

    def __init__(self, step: int, signal_name: str = "SIGUSR1", rank: int | None = None):
        self.step = step
        self.signum = signal.Signals[signal_name]
        self.rank = rank

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            os.kill(os.getpid(), self.signum)


class PauseAtStepForSignal(pl.Callback):
    """At `step` of a job's first start, write `paused.json` (the SLURM job id) into the run folder
    and wait for the scheduler's signal, so that a test can signal the job at a known step.
    Fails after `timeout_s` without one; does nothing on a requeued start."""

    def __init__(self, step: int, timeout_s: float = 240):
        self.step = step
        self.timeout_s = timeout_s

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self.step or os.environ.get("SLURM_RESTART_COUNT", "0") != "0":
            return
        from ser_lightning.preemption import RequeueOnSignal

        requeue = next(c for c in trainer.callbacks if isinstance(c, RequeueOnSignal))
        array = os.environ.get("SLURM_ARRAY_JOB_ID")  # a task of an array: its own id, not the array's
        job_id = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
        job = {"job_id": job_id, "step": trainer.global_step}
        Path(trainer.default_root_dir, "paused.json").write_text(json.dumps(job))
        deadline = time.monotonic() + self.timeout_s
        while requeue.received is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no signal reached job {job['job_id']} in {self.timeout_s} s")
            time.sleep(0.1)
