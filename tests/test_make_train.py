"""`make train` itself, as the README's quick start runs it: the default config on the built-in
demo corpus (generated at its default size, 24 actors of 3 s clips), cut to a few batches, with
its printed run summary."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .helpers.runs import assert_complete_test_result

REPO = Path(__file__).resolve().parents[1]
FEW_BATCHES = (
    "trainer.max_epochs=1 +trainer.limit_train_batches=2 +trainer.limit_val_batches=1 "
    "+trainer.limit_test_batches=1 callbacks.model_summary=null"
)


@pytest.mark.slow  # generates the 1440-clip demo corpus (about 35 s on 2 cores) and trains
def test_make_train_generates_the_demo_corpus_trains_and_prints_its_summary(tmp_path):
    env = {**os.environ, "SER_LIGHTNING_ROOT": str(tmp_path), "OMP_NUM_THREADS": "2", "COLUMNS": "200"}
    done = subprocess.run(
        ["make", "train", f"ARGS={FEW_BATCHES}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    demo = tmp_path / "data" / "demo"
    assert len(list(demo.glob("Actor_*/*.wav"))) == 24 * 60  # the default demo corpus, in RAVDESS layout
    (run_dir,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    summary = assert_complete_test_result(run_dir)
    assert summary["labels"][0] == "neutral" and len(summary["labels"]) == 8
    assert summary["split"] == "actor" and sum(summary["split_sizes"].values()) == 24 * 60
    printed = done.stdout
    assert "Run summary" in printed
    ua = f"{summary['metrics']['test/ua']:.3f}"
    assert any("unweighted accuracy (UA)" in line and ua in line for line in printed.splitlines()), printed[
        -3000:
    ]
    for row in (
        "macro-F1",
        "split",
        "actor (train 960, val 240, test 240)",
        "best checkpoint",
        "run directory",
    ):
        assert row in printed, f"{row!r} missing from the printed summary:\n{printed[-3000:]}"
    assert Path(summary["best_checkpoint"]).is_file()
