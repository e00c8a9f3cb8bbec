"""hydra/launcher=gpus: one job per GPU in a process of its own, the rest queued, on a simulated device list.

The launcher only hands out device names (CUDA_VISIBLE_DEVICES), so naming devices runs the
real queue on a CPU machine. Most tests sweep tests/apps/queue_probe.py, a Hydra application
that records what each job was given; the last ones sweep the real training entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.ser_lightning_launchers.device_queue import DeviceQueue, QueuedJob
from hydra_plugins.ser_lightning_launchers.gpu_queue import (
    QUEUE_RECORD,
    gpus_needed,
    hydra_overrides_for_a_job,
    quoted_override_value,
)
from ser_lightning.reporting.study import build_report
from ser_lightning.utils.jobs import STATUS_FILE, SWEEP_DIR_VARIABLE

from .helpers.corpora import small_demo_overrides
from .test_sweeps import TINY_RUN, run_train

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "tests" / "apps" / "queue_probe.py"


def sweep_probe(sweep_dir: Path, *args: str, environment: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(environment or {})}
    env.pop("OMP_NUM_THREADS", None)
    command = [sys.executable, str(PROBE), "-m", f"hydra.sweep.dir={sweep_dir}", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def queue_record(sweep_dir: Path) -> list[dict]:
    return json.loads((sweep_dir / QUEUE_RECORD).read_text())


def probes(sweep_dir: Path) -> dict[int, dict]:
    return {int(p.parent.name): json.loads(p.read_text()) for p in sweep_dir.glob("*/probe.json")}


def overlapping(a: dict, b: dict) -> bool:
    return a["started"] < b["ended"] and b["started"] < a["ended"]


def test_five_jobs_on_two_gpus_run_two_at_a_time_each_on_its_own(tmp_path):
    result = sweep_probe(tmp_path, "x=0,1,2,3,4", "hydra.launcher.devices=[0,1]")
    assert result.returncode == 0, result.stderr[-3000:]
    record = queue_record(tmp_path)
    assert [job["job"] for job in record] == [0, 1, 2, 3, 4]
    assert all(job["status"] == "ok" and len(job["devices"]) == 1 for job in record)
    # the first two start together, one per device; the rest wait for a free one, in order
    assert record[0]["devices"] == ["0"] and record[1]["devices"] == ["1"]
    assert overlapping(record[0], record[1])
    assert [job["started"] for job in record] == sorted(job["started"] for job in record)
    for a, b in combinations(record, 2):
        if overlapping(a, b):
            assert a["devices"] != b["devices"], (a, b)
    for a, b, c in combinations(record, 3):
        assert not (overlapping(a, b) and overlapping(b, c) and overlapping(a, c)), "three jobs ran at once"
    assert {d for job in record for d in job["devices"]} == {"0", "1"}

    seen = probes(tmp_path)
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    for job in record:
        probe = seen[job["job"]]
        assert probe["x"] == job["job"]
        # each job is a single run of the application in its own folder, seeing only its device
        assert probe["mode"] == "RunMode.RUN"
        assert probe["environment"]["CUDA_VISIBLE_DEVICES"] == job["devices"][0]
        assert probe["environment"]["OMP_NUM_THREADS"] == threads
        assert probe["environment"][SWEEP_DIR_VARIABLE] == str(tmp_path)
        assert (tmp_path / str(job["job"]) / ".hydra" / "overrides.yaml").exists()
        assert (
            json.loads((tmp_path / str(job["job"]) / STATUS_FILE).read_text())["result"]
            == (job["job"] - 2) ** 2
        )
    assert "GPU queue: 5 job(s) in" in result.stderr + result.stdout


def test_a_job_may_take_several_gpus(tmp_path):
    result = sweep_probe(tmp_path, "x=0,1", "gpus=2", "hydra.launcher.devices=[3,5,7]")
    assert result.returncode == 0, result.stderr[-3000:]
    record = queue_record(tmp_path)
    assert [job["devices"] for job in record] == [["3", "5"], ["3", "5"]]
    assert not overlapping(*record), "the second job needs two GPUs and only one was free"
    assert probes(tmp_path)[1]["environment"]["CUDA_VISIBLE_DEVICES"] == "3,5"


def test_a_failed_job_is_recorded_and_the_grid_goes_on(tmp_path):
    result = sweep_probe(tmp_path, "x=1,2,3", "fail_at=2", "sleep_s=0", "hydra.launcher.devices=[0]")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [job["status"] for job in queue_record(tmp_path)] == ["ok", "failed", "ok"]
    failed = json.loads((tmp_path / "1" / STATUS_FILE).read_text())
    assert failed["status"] == "failed" and "exited with 1" in failed["error"]
    assert failed["overrides"] == ["x=2", "fail_at=2", "sleep_s=0"]
    assert "asked to fail at x=2" in (tmp_path / "1" / "console.log").read_text()


def test_optuna_gets_each_jobs_result_through_the_queue(tmp_path):
    result = sweep_probe(
        tmp_path,
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.sampler.seed=3",
        "x=choice(0,1,3,4)",
        "sleep_s=0",
        "hydra.launcher.devices=[0,1]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = queue_record(tmp_path)
    assert len(record) == 4 and [job["job"] for job in record] == [0, 1, 2, 3]
    tried = [probe["x"] for probe in probes(tmp_path).values()]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    assert best["best_value"] == min((x - 2) ** 2 for x in tried)
    assert (best["best_params"]["x"] - 2) ** 2 == best["best_value"]


def test_a_job_past_its_time_limit_is_stopped_and_recorded(tmp_path):
    result = sweep_probe(
        tmp_path, "x=0", "sleep_s=600", "hydra.launcher.timeout_min=0.05", "hydra.launcher.devices=[0]"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = queue_record(tmp_path)
    assert job["timed_out"] and job["status"] == "failed" and job["seconds"] < 60
    assert "timed out after" in json.loads((tmp_path / "0" / STATUS_FILE).read_text())["error"]


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line holds `marker`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_an_interrupt_stops_every_running_job_and_starts_no_other(tmp_path):
    """Ctrl-C in the sweep's process: the jobs it started stop with it, the queued ones never start."""
    marker = f"queue-interrupt-{os.getpid()}-{tmp_path.name}"
    events = []

    def on_event(message: str) -> None:
        events.append(message)
        if message.startswith("#1 started"):
            raise KeyboardInterrupt

    sleeper = [sys.executable, "-c", "import time; time.sleep(600)", marker]
    jobs = [QueuedJob(n, sleeper, tmp_path / str(n), 1) for n in range(3)]
    with pytest.raises(KeyboardInterrupt):
        DeviceQueue(["0", "1"], on_event=on_event).run(jobs)
    assert processes_with(marker) == []
    assert events[-1] == "stopped 2 running job(s): #0, #1"
    assert not (tmp_path / "2").exists()


@pytest.mark.parametrize(
    ("args", "environment", "message"),
    [
        (["gpus=3", "hydra.launcher.devices=[0,1]"], {}, "needs 3 GPUs, but the queue has 2 (0, 1)"),
        ([], {"CUDA_VISIBLE_DEVICES": ""}, "hydra/launcher=gpus found no GPU"),
        (["gpus=auto", "hydra.launcher.devices=[0]"], {}, "set trainer.devices=N"),
    ],
)
def test_a_queue_that_cannot_run_stops_before_any_job(tmp_path, args, environment, message):
    result = sweep_probe(tmp_path, "x=0,1", *args, environment=environment)
    assert result.returncode != 0
    assert message in result.stderr
    assert not list(tmp_path.glob("*/probe.json"))


def test_gpus_per_job_reads_trainer_devices():
    assert gpus_needed(2, 0) == 2 and gpus_needed("4", 0) == 4 and gpus_needed([0, 1, 2], 0) == 3
    for unusable in ("auto", -1, 0, True, None):
        with pytest.raises(ValueError, match="needs a number of GPUs"):
            gpus_needed(unusable, 0)


def test_a_job_gets_the_sweeps_hydra_overrides_but_not_its_sweeping_ones():
    kept = hydra_overrides_for_a_job(
        [
            "hydra/launcher=gpus",
            "hydra.launcher.devices=[0,1]",
            "hydra/sweeper=optuna",
            "hydra.sweeper.n_trials=4",
            "hydra.sweep.dir=/tmp/s",
            "hydra.run.dir=/tmp/r",
            "hydra.job.chdir=true",
            "hydra.verbose=true",
        ]
    )
    assert kept == ["hydra.job.chdir=true", "hydra.verbose=true"]


@pytest.mark.parametrize("path", ["/data/run 1/0", "/odd/it's=here/0", "C:\\runs\\0", "ends\\", "a\\'b"])
def test_a_job_folder_reaches_hydra_as_one_literal_string(path):
    (override,) = OverridesParser.create().parse_overrides([f"hydra.run.dir={quoted_override_value(path)}"])
    assert override.value() == path


@pytest.mark.slow  # 15-35 s on 2 cores: in the slow set, which CI runs, to keep the default suite near 10 min
def test_two_training_jobs_share_two_gpus(small_demo_root, tmp_path):
    """The real entry point: each job trains, tests and checkpoints in its folder; the study report follows."""
    result = run_train(
        [
            "-m",
            "hydra/launcher=gpus",
            "hydra.launcher.devices=[0,1]",
            "model=acnt,crnn_attn",
            *small_demo_overrides(small_demo_root),
            *TINY_RUN,
        ],
        tmp_path,
        tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    record = queue_record(sweep_dir)
    assert [job["status"] for job in record] == ["ok", "ok"]
    assert sorted(job["devices"][0] for job in record) == ["0", "1"]
    for job in ("0", "1"):
        status = json.loads((sweep_dir / job / STATUS_FILE).read_text())
        summary = json.loads((sweep_dir / job / "summary.json").read_text())
        assert status["result"] == pytest.approx(summary["metrics"]["val/ua_best"])
        assert list((sweep_dir / job / "checkpoints").glob("*.ckpt"))
    # the study report reads the sweep folder as it reads one of the in-process launchers
    summary = pd.read_csv(build_report(sweep_dir)["summary"])
    assert sorted(summary["model"]) == ["acnt", "crnn_attn"] and list(summary["runs"]) == [1, 1]


# about a minute and a half: two DDP jobs of two ranks each, four processes on the CPU at once
@pytest.mark.slow
def test_ddp_jobs_take_two_gpus_each_and_start_their_ranks_in_their_own_folders(small_demo_root, tmp_path):
    result = run_train(
        [
            "-m",
            "hydra/launcher=gpus",
            "hydra.launcher.devices=[0,1,2,3]",
            "seed=1,2",
            "trainer=ddp_sim",
            *small_demo_overrides(small_demo_root),
            *TINY_RUN,
        ],
        tmp_path,
        tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    record = queue_record(sweep_dir)
    assert [job["devices"] for job in record] == [["0", "1"], ["2", "3"]]
    assert overlapping(*record)
    for job in ("0", "1"):
        console = (sweep_dir / job / "console.log").read_text()
        assert "MEMBER: 1/2" in console and "MEMBER: 2/2" in console
        assert (sweep_dir / job / "train_ddp_process_1.log").is_file()  # rank 1 ran in this job's folder
        assert json.loads((sweep_dir / job / STATUS_FILE).read_text())["status"] == "ok"
    assert not (tmp_path / "outputs" / "train" / "runs").exists()  # no rank wrote a folder of its own
