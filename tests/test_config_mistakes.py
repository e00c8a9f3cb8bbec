"""Config mistakes stop a run before any work, with a message that names the key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException

from ser_lightning.train import build
from ser_lightning.utils.jobs import StartupError

from .helpers.configs import compose_train

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.batchsize=8", r"Could not override 'data.batchsize'"),
        (
            "data.split_ratios=[0.5,0.3,0.3]",
            r"data.split_ratios=\[0.5, 0.3, 0.3\] must be three positive numbers",
        ),
    ],
    ids=["misspelled-key", "ratios-not-summing-to-1"],
)
def test_the_entry_point_refuses_before_any_work(tmp_path, override, message):
    run_dir, data_dir, cache_dir = tmp_path / "run", tmp_path / "data", tmp_path / "cache"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ser_lightning.train",
            override,
            f"hydra.run.dir={run_dir}",
            f"paths.data_dir={data_dir}",
            f"paths.cache_dir={cache_dir}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1
    assert re.search(message, result.stderr), result.stderr[-2000:]
    # no corpus generated, no cache, no split, no checkpoint
    assert not data_dir.exists() and not cache_dir.exists()
    assert not (run_dir / "split.csv").exists() and not (run_dir / "checkpoints").exists()


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["model=transformerx"], MissingConfigException, r"Could not find 'model/transformerx'"),
        (["data.splt=actor"], ConfigCompositionException, r"Could not override 'data.splt'"),
        (["data.batch_size=-4"], StartupError, r"data.batch_size=-4 must be at least 1"),
        (["data.split=speaker"], StartupError, r"data.split='speaker' is not known"),
        (["data.split_ratios=[0.7,0.3]"], StartupError, r"data.split_ratios=\[0.7, 0.3\]"),
        (["data.on_error=ignore"], StartupError, r"data.on_error='ignore' must be one of"),
        (["data.max_skip_fraction=5"], StartupError, r"data.max_skip_fraction=5"),
        (["data.duration=0"], StartupError, r"data.duration=0 is out of range"),
        (["data.cache_lock_timeout=0"], StartupError, r"data.cache_lock_timeout=0 must be a positive"),
        (["model.label_smoothing=1.5"], StartupError, r"model.label_smoothing=1.5"),
        (["features.normalization=global"], StartupError, r"features.normalization='global'"),
        (["+data.batchsize=8"], StartupError, r"unexpected keyword argument 'batchsize'"),
    ],
)
def test_config_mistakes_name_the_key(tmp_path, overrides, error, message):
    with pytest.raises(error, match=message):
        build(compose_train(overrides, tmp_path / "run", tmp_path / "cache"))
    assert not (tmp_path / "cache").exists()
