"""Preemption on SLURM: a requeue signal saves the run where it stands, and the requeued job goes on.

A SLURM job learns that it must stop from a signal: submitit's (USR2, sent `signal_delay_s`
before the time limit, or when the job is preempted), or one sent by hand
(`scancel --signal=USR1 <job>`). `RequeueOnSignal` then:

1. only notes the signal in its handler: a signal arrives anywhere, inside an optimizer step
   too, where nothing consistent can be saved;
2. before the next training batch (all DDP ranks agree on which one, and never inside a
   gradient accumulation; with several ranks, at the next multiple of `check_every_n_steps`
   optimizer steps), writes `checkpoints/preempted.ckpt`: weights, optimizer, scheduler,
   Lightning's loop progress (k batches of epoch e done), and for every rank its random
   generator states and the partial state of its training metrics;
3. requeues the job, through submitit's own handler when submitit started it (so that its
   requeue bookkeeping stays right), with `scontrol requeue` otherwise, and exits.

The requeued job runs the same command in the same run directory.
`resume.checkpoint_to_resume` finds `preempted.ckpt` there and resumes from it: the train
sampler skips the k batches already trained (its order is a function of (seed, epoch) only,
`data/sampling.py`), and each rank's generators and metric states are put back right before
batch k + 1. The run then ends with the weights, metrics and metrics CSV of the same run
uninterrupted (tests/test_slurm.py compares them exactly on a real one-node SLURM). The file
is deleted when training ends.

Outside a SLURM batch job (no `SLURM_JOB_ID`, or an interactive `srun --pty bash`) the callback
installs nothing, so a signal sent to a local run keeps its usual meaning, unless
`callbacks.requeue.enabled=true`: then it saves the same way and exits with status 3, and
running the same command in the same run directory resumes (for a supervisor of one's own).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import Callback
from torchmetrics import Metric

log = logging.getLogger(__name__)

PREEMPTED_CHECKPOINT = "preempted.ckpt"
# The exit status of a process that stopped to be requeued (submitit's own handler exits with -1).
REQUEUED_EXIT_CODE = 3
# Job names under which SLURM runs an interactive shell, not a batch job (as Lightning reads them).
INTERACTIVE_JOB_NAMES = ("bash", "interactive")
# How often DDP ranks agree on whether a signal came, in optimizer steps (see `_due`).
CHECK_EVERY_N_STEPS = 10


def in_slurm_batch_job() -> bool:
    """Whether this process is a task of a SLURM batch job (not an interactive shell).

    Returns:
        True when `SLURM_JOB_ID` is set and the job is not named like an interactive shell.
    """
    return "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in INTERACTIVE_JOB_NAMES


def preempted_checkpoint(run_dir: str | Path) -> Path:
    """Where a run directory keeps the checkpoint written on a requeue signal.

    Args:
        run_dir: The run's output directory.

    Returns:
        `<run_dir>/checkpoints/preempted.ckpt` (which may not exist).
    """
    return Path(run_dir) / "checkpoints" / PREEMPTED_CHECKPOINT


class RequeueOnSignal(Callback):
    """Saves the run before the next batch after a requeue signal, requeues the job and exits.

    Args:
        dirpath: The run's checkpoint folder; `preempted.ckpt` is written there.
        signals: Signal names that ask for a requeue, e.g. `["SIGUSR1", "SIGUSR2"]`.
        enabled: Install the handlers; None: only inside a SLURM batch job. True outside SLURM
            saves and exits with REQUEUED_EXIT_CODE, for a supervisor that restarts the command.
        check_every_n_steps: With several ranks, they agree on a signal (one all-reduce) every
            this many optimizer steps; one rank reads its own flag at every step.
    """

    def __init__(
        self,
        dirpath: str | Path,
        signals: list[str] | tuple[str, ...] = ("SIGUSR1", "SIGUSR2"),
        enabled: bool | None = None,
        check_every_n_steps: int = CHECK_EVERY_N_STEPS,
    ):
        if check_every_n_steps < 1:
            raise ValueError(f"check_every_n_steps={check_every_n_steps} must be at least 1")
        self.check_every_n_steps = check_every_n_steps
        self.agreements = 0  # all-reduces made to agree on a signal (several ranks only)
        self.dirpath = Path(dirpath)
        self.signals = [signal.Signals[name if name.startswith("SIG") else f"SIG{name}"] for name in signals]
        self.enabled = in_slurm_batch_job() if enabled is None else enabled
        self.received: int | None = None
        self._previous: dict[signal.Signals, Any] = {}
        self._saving: dict | None = None
        self._resume: dict | None = None

    @property
    def state_key(self) -> str:
        """One entry per run in a checkpoint's `callbacks`, whatever the settings."""
        return type(self).__name__

    # ----------------------------------------------------------------------------- the signal
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Install the signal handlers for a fit (before Lightning installs its own SLURM handler)."""
        if stage != "fit" or not self.enabled:
            return
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note_signal)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Put back the handlers that were there before the fit."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _note_signal(self, signum: int, frame: Any) -> None:
        # Nothing else here: the interrupted code may hold any lock (logging's included).
        self.received = signum
        os.write(2, f"{signal.Signals(signum).name}: saving at the next batch, then requeueing\n".encode())

    def _due(self, trainer: pl.Trainer, done: int) -> bool:
        """Whether this batch is one where the ranks check for a signal.

        Only between optimizer steps: accumulated gradients are not saved. One rank reads its own
        flag there, for free. Several ranks must agree, which takes an all-reduce (and a wait for
        the slowest rank and a device sync) before the batch: at every step that is a collective per
        step for a signal that comes perhaps once a run, with minutes of warning (submitit sends it
        `signal_delay_s`, 120 s here, before the time limit). So they agree every
        `check_every_n_steps` steps, a few seconds of training at most. Every rank counts the same
        completed batches, so all of them check, and stop, before the same batch.

        Returns:
            True when the ranks check before this batch.
        """
        if done % trainer.accumulate_grad_batches:
            return False
        return (
            trainer.world_size == 1
            or (done // trainer.accumulate_grad_batches) % self.check_every_n_steps == 0
        )

    def _agreed(self, trainer: pl.Trainer) -> bool:
        """Whether any rank got the signal: every rank must stop before the same batch.

        Returns:
            True when this rank or another one has received a requeue signal.
        """
        if trainer.world_size == 1:
            return self.received is not None
        self.agreements += 1
        flag = torch.tensor(float(self.received is not None), device=trainer.strategy.root_device)
        flag = trainer.strategy.reduce(flag, reduce_op="sum")
        return bool(flag.item() > 0)

    # ------------------------------------------------------------------------- saving and exit
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Put back a resumed rank's state before its first batch; on a signal, save and requeue."""
        if self._resume is not None:
            _restore_rank_state(self._resume["ranks"][trainer.global_rank], pl_module)
            self._resume = None
        if not self._previous:
            return
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        if not self._due(trainer, done) or not self._agreed(trainer):
            return
        path = self.dirpath / PREEMPTED_CHECKPOINT
        self._saving = {
            "epoch": trainer.current_epoch,
            "batches_done": done,
            "ranks": _gather(_rank_state(pl_module)),
            "agreements": self.agreements,  # how often the ranks checked before this stop
        }
        trainer.save_checkpoint(path, weights_only=False)
        self._saving = None
        if trainer.is_global_zero:
            log.warning(
                "saved %s after %d batches of epoch %d; requeueing the job", path, done, trainer.current_epoch
            )
        self._requeue(trainer)

    def _requeue(self, trainer: pl.Trainer) -> None:
        """Requeue this job and leave: through submitit's handler when it has one, else scontrol.

        Outside SLURM (`enabled=True` by hand) it only leaves, with REQUEUED_EXIT_CODE: whatever
        runs the command again resumes the run.

        Raises:
            SystemExit: Always (submitit's handler exits itself on rank 0).
        """
        for signum, handler in self._previous.items():
            if callable(handler):  # submitit's: it writes its resubmission and requeues (rank 0 exits)
                handler(signum, None)
                raise SystemExit(REQUEUED_EXIT_CODE)
        if trainer.is_global_zero and in_slurm_batch_job():
            job = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ["SLURM_JOB_ID"]
            subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
        raise SystemExit(REQUEUED_EXIT_CODE)

    def state_dict(self) -> dict:
        """The resume point and every rank's state, in the checkpoint written on a signal only.

        Returns:
            `epoch`, `batches_done`, `ranks` (one state per rank) and `agreements` (the ranks'
            checks for a signal so far); empty in other checkpoints.
        """
        return dict(self._saving) if self._saving is not None else {}

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict
    ) -> None:
        """Make the logging step count of the checkpoint written on a signal come out right on resume.

        Lightning adds one to `_batches_that_stepped` when it restarts inside an epoch: it expects
        a checkpoint written at the end of a batch, before that count moves on. This one is
        written before the next batch, where the count is already complete.
        """
        if self._saving is not None:
            checkpoint["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] -= 1

    # ------------------------------------------------------------------------------ resuming
    def load_state_dict(self, state_dict: dict) -> None:
        """Keep a preempted run's resume point, to hand to the data and put back before its next batch."""
        self._resume = dict(state_dict) if state_dict else None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Tell the data module which batches of the resumed epoch were trained already.

        Raises:
            RuntimeError: If the data module cannot skip batches, or the run resumes with another
                number of ranks than it stopped with.
        """
        if self._resume is None:
            return
        resume_within_epoch = getattr(trainer.datamodule, "resume_within_epoch", None)
        if resume_within_epoch is None:
            raise RuntimeError(
                f"{PREEMPTED_CHECKPOINT} stopped inside epoch {self._resume['epoch']}, and this data module "
                "cannot skip the batches already trained (it has no resume_within_epoch)"
            )
        resume_within_epoch(self._resume["epoch"], self._resume["batches_done"])
        # Lightning warns that a loader that is not resumable cannot go on inside an epoch: this one does
        warnings.filterwarnings(
            "ignore", message="You're resuming from a checkpoint that ended before the epoch"
        )
        if len(self._resume["ranks"]) != trainer.world_size:
            raise RuntimeError(
                f"{PREEMPTED_CHECKPOINT} was written by {len(self._resume['ranks'])} ranks and is resumed by "
                f"{trainer.world_size}: a run stopped inside an epoch resumes with as many ranks as it had"
            )

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Training is over: the preempted state must never resume this run again."""
        if trainer.is_global_zero:
            (self.dirpath / PREEMPTED_CHECKPOINT).unlink(missing_ok=True)


# ------------------------------------------------------------------------ one rank's state
def _training_metrics(pl_module: pl.LightningModule) -> dict[str, Metric]:
    """The module's metrics that accumulate over a training epoch.

    Returns:
        Every torchmetrics Metric under an attribute whose name starts with "train", by name.
    """
    return {
        name: module
        for name, module in pl_module.named_modules()
        if isinstance(module, Metric) and name.split(".")[0].startswith("train")
    }


def _rank_state(pl_module: pl.LightningModule) -> dict:
    """This rank's generator states and partial training metrics.

    Returns:
        Tensors and plain values only, which safe loading (weights_only) reads back.
    """
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    metrics = {}
    for name, metric in _training_metrics(pl_module).items():
        states = {key: _to_cpu(getattr(metric, key)) for key in metric._defaults}
        metrics[name] = {"states": states, "update_count": metric._update_count}
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
        "metrics": metrics,
    }


def _restore_rank_state(state: dict, pl_module: pl.LightningModule) -> None:
    """Put back what `_rank_state` took, on the module's device."""
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    metrics = _training_metrics(pl_module)
    for name, saved in state["metrics"].items():
        metric = metrics[name]
        for key, value in saved["states"].items():
            setattr(metric, key, _to_device(value, pl_module.device))
        metric._update_count = saved["update_count"]
        metric._computed = None


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    return [_to_cpu(v) for v in value]


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return [_to_device(v, device) for v in value]


def _gather(state: dict) -> list[dict]:
    """Every rank's state (a collective: all ranks call it at the same batch).

    Returns:
        The states of all ranks, in rank order.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [state]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, state)
    return gathered
