"""Job states of a SLURM cluster without accounting: `squeue` where `sacct` cannot answer.

submitit follows the jobs it waits for with `sacct`. Where SLURM keeps no accounting
(`AccountingStorageType=accounting_storage/none`) every call fails, and submitit logs
`Bypassing sacct error ... status may be inaccurate` while sacct prints `Slurm accounting
storage is disabled`, each time, for the whole sweep. `job_states_from_squeue_where_sacct_fails`
asks sacct once; when it cannot answer, it logs one line and has submitit read `squeue`, which
the controller answers without accounting (a job that has left the queue is known to be done
from the result file it wrote, as submitit does anyway).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

log = logging.getLogger(__name__)

# What submitit asks sacct for, and the same columns from squeue.
SACCT_COLUMNS = "JobID|State|NodeList"
SQUEUE_FORMAT = "%i|%T|%N"


class SqueueInfoWatcher(SlurmInfoWatcher):
    """submitit's job-state watcher, reading `squeue` instead of `sacct`."""

    def _make_command(self) -> list[str] | None:
        if not self._registered - self._finished:
            return None
        # every job of this user the controller still knows, one line per array task; unlike
        # `squeue --jobs`, this does not fail once a job has left the queue
        return ["squeue", "--noheader", "--array", "--states=all", "--me", f"--format={SQUEUE_FORMAT}"]

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        """Read squeue's lines as submitit reads sacct's.

        Returns:
            The state and nodes of every job listed, by job id (`<array job>_<task>` for arrays).
        """
        text = string.decode() if isinstance(string, bytes) else string
        return super().read_info(f"{SACCT_COLUMNS}\n{text}")


def accounting_error() -> str | None:
    """Why `sacct` cannot tell job states here, or None when it can.

    Returns:
        sacct's own message (or that it is missing) when it fails, else None.
    """
    try:
        done = subprocess.run(["sacct", "--noheader", "--jobs=1"], capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return "sacct is not installed"
    except subprocess.TimeoutExpired:
        return "sacct did not answer in 30 s"
    return (done.stderr.strip() or f"sacct exited with status {done.returncode}") if done.returncode else None


@contextmanager
def job_states_from_squeue_where_sacct_fails() -> Iterator[str | None]:
    """Follow the sweep's jobs with squeue while it runs if sacct cannot tell their states.

    Yields:
        Why sacct cannot be used, or None when it is used as usual.
    """
    why = accounting_error()
    if why is None:
        yield None
        return
    log.info("sacct cannot tell job states here (%s): following the jobs with squeue", why)
    usual = SlurmJob.watcher
    SlurmJob.watcher = SqueueInfoWatcher(delay_s=usual._delay_s)
    try:
        yield why
    finally:
        SlurmJob.watcher = usual
