"""A one-node SLURM cluster for the tests: Debian's munged, slurmctld and slurmd on this machine.

`one_node_cluster(folder)` starts one when none is given: its own munge key and socket, its
own ports, state and logs, all under `folder`, the node declared with this machine's cores and
memory, no accounting (as on many small clusters: `sacct` answers that accounting is
disabled). It needs `slurm-wlm` and `munge` (`.ci/run` installs them); without them it fails,
naming the packages. `SER_TEST_SLURM_CONF=<slurm.conf>` makes the tests use a running cluster
instead; it is then neither configured nor stopped.

Everything a test runs against the cluster gets `SLURM_CONF` through `cluster.env()`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
# A requeued job may start again only once its credential has expired: 120 s by default, 10 s
# here, so that the requeue test waits seconds, not minutes.
CRED_EXPIRE_S = 10


@dataclass
class SlurmCluster:
    """A running cluster, reached through its slurm.conf."""

    conf: Path
    folder: Path | None = None  # None: a cluster this module did not start

    def env(self, **extra: str) -> dict[str, str]:
        """This process's environment with `SLURM_CONF` pointing at the cluster, and `extra`."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *command: str, check: bool = True) -> str:
        """Run a SLURM client command against this cluster and return what it printed."""
        done = subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=60)
        if check and done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout + done.stderr

    def job_states(self) -> dict[str, str]:
        """Job id -> state of every job the controller knows (running, pending, ...)."""
        lines = self.run("squeue", "--noheader", "--format=%i %T").split("\n")
        return dict(line.split() for line in lines if line.strip())

    def wait_for(self, predicate, timeout: float, what: str, poll: float = 0.5):
        """Poll `predicate()` until it returns something true; fail naming `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(poll)
        raise TimeoutError(f"waited {timeout:.0f} s for {what}; queue: {self.job_states()}{self._log_tail()}")

    def _log_tail(self) -> str:
        if self.folder is None:
            return ""
        tails = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.folder / "log" / name
            if path.is_file():
                tails.append(f"\n--- {name}\n" + "\n".join(path.read_text().splitlines()[-15:]))
        return "".join(tails)

    def cancel_all(self) -> None:
        """Cancel every job, and wait until the queue is empty."""
        if self.job_states():
            self.run("scancel", "--user", str(os.getuid()), check=False)
            self.wait_for(lambda: not self.job_states(), 60, "cancelled jobs to leave the queue")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("/proc/meminfo has no MemTotal")


def write_config(folder: Path) -> Path:
    """slurm.conf and a munge key for a one-node cluster whose files all lie under `folder`."""
    for sub in ("state", "spool", "log", "munge"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "munge").chmod(0o700)
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    user = (
        os.environ.get("USER") or subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    )
    settings = {
        "ClusterName": "ser-tests",
        "SlurmctldHost": f"{host}(127.0.0.1)",
        "SlurmUser": user,
        "SlurmdUser": user,
        "SlurmctldPort": _free_port(),
        "SlurmdPort": _free_port(),
        "AuthType": "auth/munge",
        "AuthInfo": f"socket={folder / 'munge' / 'munge.sock'},cred_expire={CRED_EXPIRE_S}",
        "StateSaveLocation": folder / "state",
        "SlurmdSpoolDir": folder / "spool",
        "SlurmctldPidFile": folder / "slurmctld.pid",
        "SlurmdPidFile": folder / "slurmd.pid",
        "SlurmctldLogFile": folder / "log" / "slurmctld.log",
        "SlurmdLogFile": folder / "log" / "slurmd.log",
        # no cgroups in a container: processes are tracked by parent id
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "MpiDefault": "none",
        "SchedulerType": "sched/backfill",
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",  # cores are what jobs share out; memory is not counted
        "ReturnToService": 2,
        "JobAcctGatherType": "jobacct_gather/none",
        "AccountingStorageType": "accounting_storage/none",
        "NodeName": f"{host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={_memory_mb()} State=UNKNOWN",
        "PartitionName": f"debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    }
    conf = folder / "slurm.conf"
    conf.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    return conf


def _binary(name: str) -> str | None:
    """Where a SLURM or munge program is: on PATH, or in the sbin folders Debian puts daemons in."""
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _start(folder: Path) -> SlurmCluster:
    missing = [name for name in (*DAEMONS, *CLIENTS) if _binary(name) is None]
    if missing:
        raise RuntimeError(
            f"SLURM is not installed here ({', '.join(missing)} not found): install Debian's packages with "
            "`apt-get install slurm-wlm munge` (.ci/run does this), or point SER_TEST_SLURM_CONF at the "
            "slurm.conf of a running cluster"
        )
    conf = write_config(folder)
    munge = folder / "munge"
    subprocess.run(
        [
            str(_binary("munged")),
            "--force",  # as root, in a container
            f"--socket={munge / 'munge.sock'}",
            f"--key-file={munge / 'munge.key'}",
            f"--log-file={munge / 'munged.log'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--seed-file={munge / 'munged.seed'}",
        ],
        check=True,
        timeout=30,
    )
    cluster = SlurmCluster(conf=conf, folder=folder)
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([str(_binary(daemon)), "-f", str(conf)], env=cluster.env(), check=True, timeout=30)

    def node_idle() -> bool:
        return cluster.run("sinfo", "--noheader", "--format=%t", check=False).strip() == "idle"

    cluster.wait_for(node_idle, 60, "the node to register idle")
    return cluster


def _gone(pid: int, timeout: float) -> bool:
    """Whether process `pid` has ended, waiting up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _stop(cluster: SlurmCluster) -> None:
    assert cluster.folder is not None
    with contextlib.suppress(Exception):
        cluster.cancel_all()
    cluster.run("scontrol", "shutdown", check=False)  # stops slurmctld and slurmd
    for name, grace in (("slurmctld.pid", 20), ("slurmd.pid", 20), ("munge/munged.pid", 0)):
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int((cluster.folder / name).read_text())
            if not _gone(pid, grace):
                os.kill(pid, signal.SIGTERM)
                _gone(pid, 10)


@contextlib.contextmanager
def one_node_cluster(folder: Path) -> Iterator[SlurmCluster]:
    """A running one-node cluster: `SER_TEST_SLURM_CONF`'s, or one started under `folder` and stopped after."""
    given = os.environ.get("SER_TEST_SLURM_CONF")
    if given:
        yield SlurmCluster(conf=Path(given))
        return
    cluster = _start(folder)
    try:
        yield cluster
    finally:
        _stop(cluster)
