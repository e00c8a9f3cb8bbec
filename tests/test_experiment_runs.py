"""Experiment configs run end to end through the entry point, not only composed.

`experiment=emobox_folds` trains the six EmoBox folds in one multirun on a tiny 24-actor demo
corpus (0.5 s clips, a few batches per fold) and ends with the study report.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ser_lightning.data.splits import PUBLISHED_FOLDS

from .helpers.models import TINY_NET
from .helpers.runs import assert_complete_test_result
from .test_sweeps import TINY_RUN, job_statuses, run_train

# EmoBox's published RAVDESS test folds: fold K tests these actors (checked against the
# published list itself in tests/test_splits_emobox.py)
EMOBOX_TEST_ACTORS = [set(fold) for fold in PUBLISHED_FOLDS["emobox"]]


@pytest.fixture(scope="module")
def tiny_24_actor_demo(tmp_path_factory):
    from ser_lightning.demo_corpus import DemoCorpusSpec, ensure_demo_corpus

    root = tmp_path_factory.mktemp("demo24") / "demo"
    ensure_demo_corpus(
        root, DemoCorpusSpec(num_actors=24, duration=0.5, sample_rate=16000, seed=0), progress=False
    )
    return root


@pytest.mark.slow  # 15-35 s on 2 cores: in the slow set, which CI runs, to keep the default suite near 10 min
def test_emobox_folds_trains_the_six_published_folds_and_reports_them(tiny_24_actor_demo, tmp_path):
    corpus = [
        "data=demo",
        f"data.root={tiny_24_actor_demo}",
        "data.demo.num_actors=24",
        "data.demo.duration=0.5",
        "data.duration=0.5",
    ]
    result = run_train(
        ["-m", "experiment=emobox_folds", *corpus, *TINY_RUN, *TINY_NET],
        tmp_path,
        tmp_path / "cache",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "outputs" / "emobox_folds" / "multiruns").iterdir()
    statuses = job_statuses(sweep_dir)
    assert sorted(statuses) == [str(k) for k in range(6)]
    assert all(s["status"] == "ok" for s in statuses.values()), statuses
    for fold, test_actors in enumerate(EMOBOX_TEST_ACTORS):
        split = pd.read_csv(sweep_dir / str(fold) / "split.csv", dtype={"actor": str})
        actors = {name: set(split.loc[split["split"] == name, "actor"]) for name in ("train", "val", "test")}
        assert actors["test"] == test_actors
        assert actors["val"] and not actors["val"] & actors["train"]  # validation speakers of their own
        assert actors["train"] | actors["val"] == {f"{a:02d}" for a in range(1, 25)} - test_actors
        assert_complete_test_result(sweep_dir / str(fold))
    # the study report the experiment's callback wrote: one configuration over six folds
    summary = pd.read_csv(sweep_dir / "summary.csv")
    assert list(summary["runs"]) == [6]
    fold_uas = [
        json.loads((sweep_dir / str(k) / "summary.json").read_text())["metrics"]["test/ua"] for k in range(6)
    ]
    mean_column = next(c for c in summary.columns if c.startswith("test/ua") and "mean" in c)
    assert summary[mean_column].iloc[0] == pytest.approx(sum(fold_uas) / 6)
    assert "EmoBox folds" in (sweep_dir / "report.md").read_text()
    assert "report.png" in result.stdout  # the study summary printed at the end of the multirun
