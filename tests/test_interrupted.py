"""Interrupted, concurrent and damaged cache builds, with real processes (killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ser_lightning.data.audio import load_waveform

from .helpers.cache_build_child import make_datamodule

REPO_ROOT = Path(__file__).resolve().parents[1]


def start_builder(root: Path, cache: Path, *delays: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.cache_build_child", str(root), str(cache), *delays],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def wait_for(cache: Path, pattern: str, child: subprocess.Popen, timeout: float = 180.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(cache.glob(pattern))
        if found:
            return found
        if child.poll() is not None:
            raise AssertionError(
                f"the builder ended before {pattern} appeared: {child.communicate()[1][-2000:]}"
            )
        time.sleep(0.05)
    raise AssertionError(f"{pattern} did not appear within {timeout} s")


def assert_caches_hold_the_corpus(dm) -> None:
    """Rows of both caches are the files of the table, fully written."""
    table = dm.manifest.table
    for row in (0, 77, len(table) - 1):
        expected = load_waveform(table["path"][row], dm.audio)
        np.testing.assert_array_equal(dm.arrays.waveforms[row], expected)
        features = dm.features.extract(torch.from_numpy(expected[None])).numpy()[0]
        np.testing.assert_allclose(dm.arrays.features[row], features, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("stage", ["waveforms", "features"])
def test_a_build_killed_midway_leaves_nothing_complete_and_is_rebuilt(tone_root, tmp_path, stage):
    cache = tmp_path / "cache"
    # Slow the build down enough to kill it while it fills the entry (decoding: 50 ms a file;
    # features: 5 s a chunk of 64 rows).
    delays = ("--decode-delay", "0.05") if stage == "waveforms" else ("--extract-delay", "5")
    child = start_builder(tone_root, cache, *delays)
    try:
        wait_for(cache, f"{stage}-*.npy.tmp-*", child)
        time.sleep(0.5)
        assert child.poll() is None, "the build finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not list(cache.glob(f"{stage}-*.npy")), "a killed build left an entry that looks complete"
    assert list(cache.glob(f"{stage}-*.npy.tmp-*")), "the kill came before the build started filling"

    dm = make_datamodule(str(tone_root), str(cache))
    dm.prepare_data()
    dm.setup("fit")
    first = "built waveforms" if stage == "waveforms" else "reused waveforms"
    assert dm.cache_events == [first, "built features"]
    assert not list(cache.glob("*.tmp-*")), "the temporaries of the killed build were not cleaned up"
    assert_caches_hold_the_corpus(dm)


def test_two_processes_building_the_same_caches_end_with_one_copy(tone_root, tmp_path):
    cache = tmp_path / "cache"
    children = [start_builder(tone_root, cache, "--decode-delay", "0.01") for _ in range(2)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
        results.append(json.loads([line for line in out.splitlines() if line.startswith("{")][-1]))
    # Each entry is built exactly once across the two processes; which process builds which is
    # up to the scheduler (one may build the waveforms while the other waits, then build the
    # features first while the first one waits).
    for stage in ("waveforms", "features"):
        outcomes = sorted(event for r in results for event in r["events"] if event.endswith(stage))
        assert outcomes == [f"built {stage}", f"reused {stage}"], results
    assert all(len(r["events"]) == 2 for r in results), results
    # and both read the same bytes
    assert results[0]["waveforms_sha256"] == results[1]["waveforms_sha256"]
    assert results[0]["features_sha256"] == results[1]["features_sha256"]
    assert len(list(cache.glob("waveforms-*.npy"))) == 1 and len(list(cache.glob("features-*.npy"))) == 1
    assert not list(cache.rglob("*.tmp-*"))
    dm = make_datamodule(str(tone_root), str(cache))
    dm.setup("fit")
    assert dm.cache_events == ["reused waveforms", "reused features"]
    assert_caches_hold_the_corpus(dm)


def _built_caches(tone_root: Path, cache: Path):
    dm = make_datamodule(str(tone_root), str(cache))
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_a_truncated_waveform_cache_is_rebuilt_by_the_next_run(tone_root, tmp_path, caplog):
    cache = tmp_path / "cache"
    _built_caches(tone_root, cache)
    (entry,) = cache.glob("waveforms-*.npy")
    os.truncate(entry, entry.stat().st_size // 2)  # e.g. a copy of the cache folder that stopped midway

    with caplog.at_level("WARNING", logger="ser_lightning.data.cache"):
        dm = _built_caches(tone_root, cache)
    assert dm.cache_events == ["built waveforms", "reused features"]
    assert any(str(entry) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert_caches_hold_the_corpus(dm)


def test_a_flipped_bit_in_the_feature_cache_never_reaches_a_batch(tone_root, tmp_path, caplog):
    cache = tmp_path / "cache"
    dm = _built_caches(tone_root, cache)
    (entry,) = cache.glob("features-*.npy")
    # A value in [1, 2) has the float32 exponent 0x7F; setting the exponent's top bit (bit 30)
    # turns it into NaN (or infinity, which normalisation makes NaN).
    values = np.asarray(dm.arrays.features).reshape(-1)
    index = int(np.flatnonzero((np.abs(values) >= 1) & (np.abs(values) < 2))[0])
    byte_offset = entry.stat().st_size - values.nbytes + 4 * index + 3  # little-endian: high byte last
    del values, dm
    with open(entry, "r+b") as handle:
        handle.seek(byte_offset)
        high = handle.read(1)[0]
        handle.seek(byte_offset)
        handle.write(bytes([high | 0x40]))
    assert not np.isfinite(np.load(entry, mmap_mode="r").reshape(-1)[index])

    with caplog.at_level("WARNING", logger="ser_lightning.data.cache"):
        dm = _built_caches(tone_root, cache)
    assert dm.cache_events == ["reused waveforms", "built features"]
    assert any(str(entry) in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert np.isfinite(dm.arrays.features).all()
    for batch in dm.train_dataloader():
        assert torch.isfinite(batch["features"]).all()
    assert_caches_hold_the_corpus(dm)
