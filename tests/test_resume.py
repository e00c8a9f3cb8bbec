"""Training killed mid-epoch and resumed; checkpoints that must not run code; secrets kept out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ser_lightning.preemption import PREEMPTED_CHECKPOINT, REQUEUED_EXIT_CODE
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import TINY_RUN

REPO_ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "wandb-fake-0123456789abcdef0123456789abcdef01234567"
RESULT_KEYS = ("test/ua", "test/acc", "test/f1", "test/loss", "val/ua_best", "val/loss")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_overrides(root: Path, epochs: int = 4) -> list[str]:
    return [
        *TINY_RUN,
        f"data.root={root}",
        f"trainer.max_epochs={epochs}",
        "trainer.deterministic=true",
        "seed=3",
    ]


def entry_point(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ser_lightning.train", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "WANDB_API_KEY": FAKE_KEY, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"},
    )


def files_holding(directory: Path, secret: str) -> list[str]:
    return [str(p) for p in directory.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.slow  # 15-35 s on 2 cores: in the slow set, which CI runs, to keep the default suite near 10 min
def test_a_run_killed_mid_epoch_resumes_to_the_same_result(tone_root, tmp_path, monkeypatch):
    """4 epochs of 4 steps; SIGKILL at step 6 (in epoch 1), resume with ckpt_path=last."""
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    cache = tmp_path / "cache"
    whole_dir, resumed_dir = tmp_path / "uninterrupted", tmp_path / "interrupted"
    metrics, _ = train(compose_train(run_overrides(tone_root), whole_dir, cache))

    common = [*run_overrides(tone_root), f"hydra.run.dir={resumed_dir}", f"paths.cache_dir={cache}"]
    killed = entry_point(
        [*common, "+callbacks.kill._target_=tests.helpers.callbacks.KillAtStep", "+callbacks.kill.step=6"]
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (resumed_dir / "checkpoints" / "last.ckpt").is_file() and not (
        resumed_dir / "summary.json"
    ).exists()
    assert torch.load(resumed_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0

    resumed = entry_point([*common, "ckpt_path=last"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((resumed_dir / "summary.json").read_text())
    assert summary["output_dir"] == str(resumed_dir)  # the resumed run wrote into the same directory
    for key in RESULT_KEYS:
        assert summary["metrics"][key] == pytest.approx(metrics[key], abs=1e-6), key
    # nothing of the history was lost: every epoch's row is there once, with the same values
    whole = pd.read_csv(whole_dir / "csv" / "metrics.csv")
    again = pd.read_csv(resumed_dir / "csv" / "metrics.csv")
    columns = ["epoch", "step", "val/loss", "val/ua", "val/ua_best", "train/loss"]
    pd.testing.assert_frame_equal(again[columns], whole[columns], check_exact=False, atol=1e-6)
    assert again.dropna(subset=["val/loss"])["epoch"].tolist() == [0, 1, 2, 3]

    # the W&B key in the environment reached no file of either run (configs, logs, checkpoints)
    assert files_holding(resumed_dir, FAKE_KEY) == [] and files_holding(whole_dir, FAKE_KEY) == []
    assert (resumed_dir / ".hydra" / "config.yaml").is_file() and (resumed_dir / "train.log").is_file()


@pytest.mark.slow  # a sweep, or whole runs one after another: the slow set (CI runs it)
def test_a_requeue_signal_mid_epoch_saves_there_and_the_rerun_ends_as_if_never_stopped(tone_root, tmp_path):
    """callbacks.requeue.enabled=true outside SLURM: SIGUSR1 at step 6 (2 batches into epoch 1) saves
    preempted.ckpt before the next batch and exits with status 3; the same command run again resumes
    there by itself (tests/test_slurm.py does this through a real scheduler)."""
    cache = tmp_path / "cache"
    whole_dir, stopped_dir = tmp_path / "uninterrupted", tmp_path / "stopped"
    common = [*run_overrides(tone_root), f"paths.cache_dir={cache}", "callbacks.requeue.enabled=true"]
    assert entry_point([*common, f"hydra.run.dir={whole_dir}"]).returncode == 0

    common.append(f"hydra.run.dir={stopped_dir}")
    signalled = [
        *common,
        "+callbacks.signal._target_=tests.helpers.callbacks.SignalAtStep",
        "+callbacks.signal.step=6",
    ]
    stopped = entry_point(signalled)
    assert stopped.returncode == REQUEUED_EXIT_CODE, stopped.stderr[-3000:]
    saved = torch.load(stopped_dir / "checkpoints" / PREEMPTED_CHECKPOINT, weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (1, 6)
    assert saved["callbacks"]["RequeueOnSignal"]["batches_done"] == 2

    resumed = entry_point(common)  # no ckpt_path: the run directory's preempted.ckpt is found
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in (stopped_dir / "train.log").read_text()
    assert not (stopped_dir / "checkpoints" / PREEMPTED_CHECKPOINT).exists()
    whole = torch.load(whole_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    again = torch.load(stopped_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert whole.keys() == again.keys() and all(torch.equal(whole[k], again[k]) for k in whole)
    metrics = [json.loads((d / "summary.json").read_text())["metrics"] for d in (whole_dir, stopped_dir)]
    assert metrics[0] == metrics[1]
    rows = [pd.read_csv(d / "csv" / "metrics.csv") for d in (whole_dir, stopped_dir)]
    pd.testing.assert_frame_equal(rows[1], rows[0], check_exact=True)


@pytest.mark.slow  # two DDP ranks on the CPU (trainer=ddp_sim) and a tone run: the slow set
def test_ddp_ranks_check_for_a_signal_every_n_steps_and_stop_before_the_same_batch(tone_root, tmp_path):
    """SIGUSR1 to rank 1 only, after its second batch: both ranks stop before the same batch, the
    first multiple of check_every_n_steps=3 after the signal, having agreed (one all-reduce) before
    batches 0 and 3 only, where they agreed before every batch (4 times) until then."""
    run_dir = tmp_path / "run"
    overrides = [o for o in run_overrides(tone_root) if not o.startswith("data.batch_size=")]
    stopped = entry_point(
        [
            *overrides,
            "data.batch_size=4",  # enough batches per rank and epoch to see the checks spaced
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={run_dir}",
            "trainer=ddp_sim",
            "callbacks.requeue.enabled=true",
            "+callbacks.requeue.check_every_n_steps=3",
            "+callbacks.signal._target_=tests.helpers.callbacks.SignalAtStep",
            "+callbacks.signal.step=2",
            "+callbacks.signal.rank=1",
        ]
    )
    assert stopped.returncode == REQUEUED_EXIT_CODE, stopped.stderr[-3000:]
    saved = torch.load(run_dir / "checkpoints" / PREEMPTED_CHECKPOINT, weights_only=True)
    state = saved["callbacks"]["RequeueOnSignal"]
    assert len(state["ranks"]) == 2  # both ranks reached the save, before the same batch
    assert (saved["epoch"], saved["global_step"], state["batches_done"]) == (0, 3, 3)
    assert state["agreements"] == len(range(0, 3 + 1, 3)) == 2  # before batches 0 and 3; was 4


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_crafted_pickle_in_a_checkpoint_does_not_run(tone_root, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "global_step": 0, "payload": _RunsCode(marker)}, evil)

    # the way train.py resumes (trainer.fit with ckpt_path) and tests (trainer.test)
    cfg = compose_train(
        [*run_overrides(tone_root, epochs=1), f"ckpt_path={evil}"], tmp_path / "run", tmp_path / "cache"
    )
    with pytest.raises(Exception, match="Weights only load failed"):
        train(cfg)
    assert not marker.exists()

    cfg = compose_train(
        [*run_overrides(tone_root, epochs=1), "train=false"], tmp_path / "run2", tmp_path / "cache"
    )
    from ser_lightning.train import build

    objects = build(cfg)
    with pytest.raises(Exception, match="Weights only load failed"):
        objects["trainer"].test(
            objects["model"], datamodule=objects["datamodule"], ckpt_path=str(evil), weights_only=True
        )
    assert not marker.exists()

    # the payload is live: loading without weights_only would have run it
    torch.load(evil, weights_only=False)
    assert marker.is_dir()


def test_resume_mistakes_stop_before_any_work(tone_root, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(
        FileNotFoundError, match=r"(?s)ckpt_path=last: .* has no checkpoints/last.ckpt.*hydra.run.dir="
    ):
        train(compose_train([*run_overrides(tone_root), "ckpt_path=last"], tmp_path / "fresh", cache))
    assert not cache.exists()

    run_dir = tmp_path / "run"
    train(compose_train([*run_overrides(tone_root, epochs=1), "debug=fdr"], run_dir, cache))
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    torch.save({}, run_dir / "checkpoints" / "last.ckpt")  # only needs to exist: the check comes first
    changed = [
        *run_overrides(tone_root, epochs=1),
        "debug=fdr",
        "model.net.num_layers=2",
        "data.batch_size=8",
        "ckpt_path=last",
    ]
    with pytest.raises(
        ValueError, match=r"(?s)different config.*data.batch_size: 16 -> 8.*model.net.num_layers: 1 -> 2"
    ):
        train(compose_train(changed, run_dir, cache))


@pytest.mark.slow
def test_the_wandb_logger_writes_no_key_either(tone_root, tmp_path):
    """W&B (offline) reads WANDB_API_KEY itself; it must not land in its run files or ours."""
    run_dir = tmp_path / "run"
    result = entry_point(
        [
            *run_overrides(tone_root, epochs=1),
            "logger=wandb",
            f"hydra.run.dir={run_dir}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((run_dir / "wandb").glob("offline-run-*/files/*"))
    assert files_holding(run_dir, FAKE_KEY) == []


def test_last_ckpt_is_the_latest_epoch_even_when_an_earlier_one_scored_best(tone_root, tmp_path):
    # the monitored value is the epoch itself, lowest best: only epoch 0 is ever the best one
    overrides = run_overrides(tone_root, epochs=3) + [
        "callbacks.model_checkpoint.monitor=epoch",
        "callbacks.model_checkpoint.mode=min",
        "test=false",
    ]
    train(compose_train(overrides, tmp_path, tmp_path / "cache"))
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]
    # what ckpt_path=last resumes from: where the run stopped, not where it scored best
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] == 2
    assert torch.load(checkpoints / "best-epoch000.ckpt", weights_only=True)["epoch"] == 0
