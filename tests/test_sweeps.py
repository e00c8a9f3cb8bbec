"""Sweeps through the real entry point: grid with a failing job, Optuna, DDP on CPU, launchers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ser_lightning.reporting.study import build_report

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides
from .helpers.runs import assert_complete_test_result

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "print_config=false",
    "callbacks.model_summary=null",
]


def run_train(args: list[str], root: Path, cache: Path, timeout: int = 420) -> subprocess.CompletedProcess:
    """`python -m ser_lightning.train ARGS` in a subprocess, outputs under root."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    command = [
        sys.executable,
        "-m",
        "ser_lightning.train",
        *args,
        f"paths.root_dir={root}",
        f"paths.cache_dir={cache}",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return result


def job_statuses(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/job_status.json"))}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweep_cache")


@pytest.mark.slow  # 15-35 s on 2 cores: in the slow set, which CI runs, to keep the default suite near 10 min
def test_grid_sweep_skips_an_impossible_job_and_reports(small_demo_root, tmp_path, cache):
    result = run_train(
        ["-m", "model.net.transformer_dim=64,130", *small_demo_overrides(small_demo_root), *TINY_RUN],
        tmp_path,
        cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dirs = list((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    assert len(sweep_dirs) == 1
    statuses = job_statuses(sweep_dirs[0])
    assert [s["status"] for s in statuses.values()] == ["ok", "skipped"]
    assert "divisible by num_heads" in statuses["1"]["error"]
    assert statuses["0"]["result"] == pytest.approx(
        json.loads((sweep_dirs[0] / "0" / "summary.json").read_text())["metrics"]["val/ua_best"]
    )

    written = build_report(sweep_dirs[0])
    summary = pd.read_csv(written["summary"])
    assert list(summary["model.net.transformer_dim"]) == [64, 130]
    assert list(summary["runs"]) == [1, 0]
    assert "divisible by num_heads" in summary["status"].iloc[1]
    assert "skipped" in written["markdown"].read_text() and written["plot"].stat().st_size > 0


# about a minute (two DDP jobs of two processes each); a single DDP run stays in the default suite
@pytest.mark.slow
def test_ddp_sim_in_a_two_job_multirun(small_demo_root, tmp_path, cache):
    """Two ranks per job, two jobs in one sweep: each child writes into its job's folder and
    starts no sweep of its own; the second job does not inherit the first job's DDP state."""
    result = run_train(
        ["-m", "seed=1,2", "trainer=ddp_sim", *small_demo_overrides(small_demo_root), *TINY_RUN],
        tmp_path,
        cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.count("MEMBER: 1/2") == 2 and result.stderr.count("MEMBER: 2/2") == 2
    outputs = tmp_path / "outputs" / "train"
    assert [p.name for p in outputs.iterdir()] == ["multiruns"]  # no stray single-run folder
    sweep_dirs = list((outputs / "multiruns").iterdir())
    assert len(sweep_dirs) == 1
    assert sorted(p.name for p in sweep_dirs[0].iterdir() if p.is_dir()) == ["0", "1"]
    for job in ("0", "1"):
        assert job_statuses(sweep_dirs[0])[job]["status"] == "ok"
        assert (sweep_dirs[0] / job / "train_ddp_process_1.log").is_file()  # rank 1 ran in this folder


@pytest.mark.slow  # 15-35 s on 2 cores: in the slow set, which CI runs, to keep the default suite near 10 min
def test_ddp_sim_single_run_metrics_are_synchronised(small_demo_root, tmp_path, cache):
    result = run_train(
        ["trainer=ddp_sim", *small_demo_overrides(small_demo_root), *TINY_RUN], tmp_path, cache
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 1
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert_complete_test_result(runs[0])
    assert json.loads((runs[0] / "job_status.json").read_text())["status"] == "ok"
    # one test batch of 32 per rank: the report scores both ranks' clips, each once, in table order
    split = pd.read_csv(runs[0] / "split.csv")
    predictions = pd.read_csv(runs[0] / "test_report" / "predictions.csv")
    assert predictions["file"].tolist() == split.loc[split["split"] == "test", "path"].tolist()[:64]
    report = json.loads((runs[0] / "test_report" / "metrics.json").read_text())
    assert report["num_files"] == 64
    assert summary["metrics"]["test/ua"] == pytest.approx(report["ua"], abs=1e-6)
    assert summary["metrics"]["test/acc"] == pytest.approx(report["accuracy"], abs=1e-6)
    assert sum(map(sum, summary["test_results"]["confusion_matrix"])) == 64


@pytest.mark.slow
def test_optuna_search_optimises_val_ua_best(small_demo_root, tmp_path, cache):
    result = run_train(
        [
            "-m",
            "hparams_search=acnt_optuna",
            "hydra.sweeper.n_trials=3",
            "hydra.sweeper.sampler.n_startup_trials=2",
            *small_demo_overrides(small_demo_root),
            *TINY_RUN,
        ],
        tmp_path,
        cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    results = [s["result"] for s in job_statuses(sweep).values()]
    assert len(results) == 3 and best["best_value"] == pytest.approx(max(results))


@pytest.mark.slow
def test_local_parallel_launcher_runs_jobs(small_demo_root, tmp_path, cache):
    result = run_train(
        [
            "-m",
            "hydra/launcher=local_parallel",
            "seed=1,2",
            *small_demo_overrides(small_demo_root),
            *TINY_RUN,
        ],
        tmp_path,
        cache,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    assert [s["status"] for s in job_statuses(sweep).values()] == ["ok", "ok"]


def test_slurm_launcher_starts_one_task_per_gpu():
    cfg = compose_train(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"], Path("/tmp/unused"))
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == 4 and launcher.gpus_per_node == 4 and launcher.nodes == 1


def test_report_aggregates_repeats_and_keeps_failures(tmp_path):
    """Mean ± std over seeds per configuration, failed jobs listed with their error."""
    values = {("acnt", 1): 0.50, ("acnt", 2): 0.60, ("acnt", 3): 0.70, ("crnn", 1): 0.40, ("crnn", 2): 0.44}
    for index, ((model, seed), ua) in enumerate(values.items()):
        job = tmp_path / str(index)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}", f"seed={seed}"]))
        (job / "summary.json").write_text(json.dumps({"metrics": {"test/ua": ua, "test/acc": ua + 0.05}}))
        (job / "job_status.json").write_text(
            json.dumps({"status": "ok", "overrides": [f"model={model}", f"seed={seed}"]})
        )
    failed = tmp_path / "5"
    failed.mkdir()
    (failed / "job_status.json").write_text(
        json.dumps(
            {
                "status": "failed",
                "error": "RuntimeError: out of memory",
                "overrides": ["model=crnn", "seed=3"],
            }
        )
    )

    written = build_report(tmp_path, tmp_path / "report")
    summary = pd.read_csv(written["summary"]).set_index("model")
    assert summary.loc["acnt", "runs"] == 3
    assert summary.loc["acnt", "test/ua mean"] == pytest.approx(0.60)
    assert summary.loc["acnt", "test/ua std"] == pytest.approx(0.10)
    crnn = summary.loc["crnn"]
    ok_row = crnn[crnn["runs"] > 0].iloc[0]
    assert ok_row["test/ua mean"] == pytest.approx(0.42)
    assert "out of memory" in crnn[crnn["runs"] == 0].iloc[0]["status"]
    markdown = written["markdown"].read_text()
    assert "0.600 ± 0.100" in markdown and "out of memory" in markdown
    assert len(pd.read_csv(written["results"])) == 6


def test_report_on_a_folder_without_jobs_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no job folders"):
        build_report(tmp_path)
