"""The cluster path on a real one-node SLURM (tests/helpers/slurm.py): sweeps, two-task DDP, requeue.

Every job goes through `hydra/launcher=slurm` (submitit) as a user's would; the cluster is
Debian's slurm-wlm on this machine. Without SLURM the tests fail, naming the packages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ser_lightning.reporting.study import build_report

from .helpers.corpora import TINY_RUN
from .helpers.runs import assert_complete_test_result
from .helpers.slurm import one_node_cluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# One core and a little memory per task: both sweep jobs, or both DDP ranks, run at once on two cores.
ON_THE_TEST_CLUSTER = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=30",
]
EPOCHS = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with one_node_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("slurm_cache")


def run_overrides(root: Path, cache: Path) -> list[str]:
    return [
        *TINY_RUN,
        f"data.root={root}",
        f"paths.cache_dir={cache}",
        f"trainer.max_epochs={EPOCHS}",
        "trainer.deterministic=true",
        "seed=3",
        "print_config=false",
    ]


def start_train(args: list[str], cluster, log: Path) -> subprocess.Popen:
    """`python -m ser_lightning.train ARGS` against the cluster, its console into `log`."""
    env = cluster.env(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", WANDB_MODE="offline")
    with log.open("w") as console:
        return subprocess.Popen(
            [sys.executable, "-m", "ser_lightning.train", *args],
            cwd=REPO,
            env=env,
            stdout=console,
            stderr=subprocess.STDOUT,
        )


def finished(process: subprocess.Popen, log: Path, timeout: float) -> str:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    console = log.read_text()
    assert process.returncode == 0, console[-4000:]
    return console


def task_logs(sweep: Path) -> dict[str, str]:
    """submitit's log of every task (`<job>_<task>`, its .out then its .err; a requeued job's
    starts are appended to the same files), by task."""
    return {
        err.name.removesuffix("_log.err"): err.with_suffix(".out").read_text() + err.read_text()
        for err in sorted(sweep.glob(".submitit/*/*_log.err"))
    }


# ------------------------------------------------------------------ a sweep with a requeued job
@pytest.fixture(scope="module")
def requeue_sweep(cluster, tone_root, cache, tmp_path_factory) -> dict:
    """Two jobs of one sweep, the same run twice: job 1 pauses at step 6 (2 of the 4 batches of epoch 1), the test
    sends it submitit's preemption signal through the scheduler, and it is requeued and resumed."""
    sweep = tmp_path_factory.mktemp("requeue") / "sweep"
    log = sweep.parent / "console.log"
    process = start_train(
        [
            "-m",
            *run_overrides(tone_root, cache),
            *ON_THE_TEST_CLUSTER,
            f"hydra.sweep.dir={sweep}",
            "+callbacks.pause._target_=tests.helpers.callbacks.PauseAtStepForSignal",
            "+callbacks.pause.step=-1,6",
        ],
        cluster,
        log,
    )
    paused = sweep / "1" / "paused.json"
    cluster.wait_for(lambda: paused.is_file() or process.poll() is not None, 420, f"{paused} to appear")
    assert paused.is_file(), log.read_text()[-4000:]
    job_id = json.loads(paused.read_text())["job_id"]
    cluster.run("scancel", "--signal=USR2", job_id)  # what SLURM sends before a time limit or a preemption
    console = finished(process, log, timeout=600)
    return {"sweep": sweep, "console": console, "job_id": job_id}


def test_both_sweep_jobs_ran_on_slurm_and_the_study_report_reads_them(requeue_sweep):
    sweep = requeue_sweep["sweep"]
    logs = task_logs(sweep)
    assert len(logs) == 2, sorted(logs)  # one array task per job, each with its own SLURM job id
    for job in ("0", "1"):
        assert_complete_test_result(sweep / job)
        status = json.loads((sweep / job / "job_status.json").read_text())
        assert status["status"] == "ok"
    written = build_report(sweep)
    results = pd.read_csv(written["results"])
    assert len(results) == 2
    summary = pd.read_csv(written["summary"])  # one configuration per value of the pause step
    assert list(summary["runs"]) == [1, 1]
    ua = [json.loads((sweep / job / "summary.json").read_text())["metrics"]["test/ua"] for job in ("0", "1")]
    assert sorted(results["test/ua"]) == pytest.approx(sorted(ua))


def test_the_requeued_job_resumed_mid_epoch_and_ended_as_the_uninterrupted_one(requeue_sweep):
    sweep = requeue_sweep["sweep"]
    logs = task_logs(sweep)
    preempted = [name for name, text in logs.items() if "Caught signal SIGUSR2" in text]
    assert len(preempted) == 1, sorted(logs)
    assert logs[preempted[0]].count("Starting with JobEnvironment") == 2  # started, then again by SLURM
    assert (
        "saved" in logs[preempted[0]]
        and "after 2 batches of epoch 1; requeueing the job" in logs[preempted[0]]
    )
    train_log = (sweep / "1" / "train.log").read_text()
    assert "resuming from" in train_log and "preempted.ckpt" in train_log
    assert not (sweep / "1" / "checkpoints" / "preempted.ckpt").exists()  # deleted once training ended

    whole = torch.load(sweep / "0" / "checkpoints" / "last.ckpt", weights_only=True)
    again = torch.load(sweep / "1" / "checkpoints" / "last.ckpt", weights_only=True)
    assert again["epoch"] == whole["epoch"] == EPOCHS - 1 and again["global_step"] == whole["global_step"]
    assert whole["state_dict"].keys() == again["state_dict"].keys()
    for key, weights in whole["state_dict"].items():
        assert torch.equal(weights, again["state_dict"][key]), key
    summaries = [json.loads((sweep / job / "summary.json").read_text()) for job in ("0", "1")]
    assert summaries[0]["metrics"] == summaries[1]["metrics"]

    # nothing lost, nothing twice: one row per epoch, the same values as the uninterrupted run
    rows = [pd.read_csv(sweep / job / "csv" / "metrics.csv") for job in ("0", "1")]
    pd.testing.assert_frame_equal(rows[1], rows[0], check_exact=True)
    assert rows[1].dropna(subset=["val/loss"])["epoch"].tolist() == list(range(EPOCHS))


def test_a_cluster_without_accounting_is_said_once_and_its_jobs_followed_with_squeue(requeue_sweep):
    console = requeue_sweep["console"]
    said = "sacct cannot tell job states here (Slurm accounting storage is disabled): following the jobs with squeue"
    assert console.count(said) == 1
    # submitit's warning and sacct's own message, once per poll without this
    assert "Bypassing sacct error" not in console
    assert console.count("Slurm accounting storage is disabled") == 1


# ------------------------------------------------------------------------ DDP of two tasks
def test_slurm_starts_both_ddp_ranks_and_lightning_does_not_relaunch_them(
    cluster, tone_root, cache, tmp_path
):
    sweep = tmp_path / "ddp"
    overrides = [*run_overrides(tone_root, cache), "trainer=ddp_sim", "trainer.max_epochs=2"]
    log = tmp_path / "console.log"
    finished(
        start_train(["-m", *overrides, *ON_THE_TEST_CLUSTER, f"hydra.sweep.dir={sweep}"], cluster, log),
        log,
        600,
    )

    logs = task_logs(sweep)
    assert len(logs) == 2, sorted(logs)  # tasks 0 and 1 of one job
    for rank, text in enumerate(logs[name] for name in sorted(logs)):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in text
    # Lightning's own launcher would have started rank 1 as a child writing this file (test_sweeps.py)
    assert not (sweep / "0" / "train_ddp_process_1.log").exists()
    assert_complete_test_result(sweep / "0")

    # the same run started locally, where Lightning launches rank 1 itself: the same DDP metrics
    local = tmp_path / "local"
    local_log = tmp_path / "local.log"
    finished(start_train([*overrides, f"hydra.run.dir={local}"], cluster, local_log), local_log, 600)
    on_slurm = json.loads((sweep / "0" / "summary.json").read_text())["metrics"]
    here = json.loads((local / "summary.json").read_text())["metrics"]
    assert on_slurm.keys() == here.keys()
    for key, value in here.items():
        assert on_slurm[key] == pytest.approx(value, abs=1e-6), key
    assert (local / "train_ddp_process_1.log").is_file()
