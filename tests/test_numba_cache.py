"""librosa's numba cache: its own folder, compiled by one process at a time, rebuilt when corrupted.

Every run is a fresh process on a temporary NUMBA_CACHE_DIR (a corrupted cache kills the process
that loads it). Compiling librosa's functions takes ~20 s on 2 cores, so the empty-cache runs are
done once, in a fixture, and the corruption test starts from a copy of the cache they left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ser_lightning.utils.numba_cache import STAMP_NAME, cache_files, site_packages_cache_files

# slow set (CI runs it): several processes compile librosa's functions from an empty cache, minutes on 2 cores
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CHILD = "tests.helpers.numba_cache_child"
TIMEOUT_S = 300


def start_child(cache: Path, out: Path, *flags: str) -> subprocess.Popen:
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", CHILD, str(out), *flags],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(child: subprocess.Popen) -> tuple[int, str]:
    _, stderr = child.communicate(timeout=TIMEOUT_S)
    return child.returncode, stderr


@pytest.fixture(scope="module")
def parallel_runs(tmp_path_factory):
    """Two runs started together on an empty cache (a sweep's jobs), then a third: their outputs."""
    root = tmp_path_factory.mktemp("numba")
    cache = root / "cache"
    site_files = len(site_packages_cache_files())
    together = [start_child(cache, root / f"run{i}.npy") for i in range(2)]
    results = [finish(child) for child in together]
    results.append(finish(start_child(cache, root / "run2.npy")))
    return {
        "cache": cache,
        "results": results,
        "outputs": [root / f"run{i}.npy" for i in range(3)],
        "site_files_before": site_files,
    }


def test_parallel_precompute_on_an_empty_cache_never_crashes(parallel_runs):
    for returncode, stderr in parallel_runs["results"]:
        assert returncode == 0, stderr[-2000:]
    first = np.load(parallel_runs["outputs"][0])
    pooled, in_process = first
    assert pooled.shape == (16, 1, 68, 44)  # 1 s at 22.05 kHz, hop 512
    assert np.isfinite(pooled).all() and pooled.std(axis=(0, 3)).min() > 0
    # the worker pool and this process computed the same features
    np.testing.assert_allclose(pooled, in_process, rtol=1e-5, atol=1e-5)
    for later in parallel_runs["outputs"][1:]:
        np.testing.assert_array_equal(np.load(later), first)
    # compiled into the folder given, recorded as loading; nothing written to site-packages
    cache = parallel_runs["cache"]
    assert any(p.suffix == ".nbi" and "_zc_wrapper" in p.name for p in cache_files(cache))
    assert "handcrafted68" in json.loads((cache / STAMP_NAME).read_text())["verified"]
    assert len(site_packages_cache_files()) == parallel_runs["site_files_before"]


def swap_overloads(cache: Path, function: str) -> list[Path]:
    """Swap the data files of a function's first two signatures, as compiling at once can leave them."""
    swapped = []
    for index in sorted(p for p in cache_files(cache) if p.suffix == ".nbi" and function in p.name):
        first, second = (index.with_name(index.name.replace(".nbi", f".{i}.nbc")) for i in (1, 2))
        first_bytes = first.read_bytes()
        first.write_bytes(second.read_bytes())
        second.write_bytes(first_bytes)
        swapped += [first, second]
    return swapped


def test_a_corrupted_cache_is_detected_and_rebuilt(parallel_runs, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(parallel_runs["cache"], cache)
    swapped = swap_overloads(cache, "_zc_wrapper")
    assert len(swapped) == 4  # the jitted kernel and its gufunc, float32 and float64 each
    corrupted = {p: p.read_bytes() for p in swapped}

    # a process that loads it unprotected dies (segmentation fault) or fails
    returncode, stderr = finish(start_child(cache, tmp_path / "plain.npy", "--plain"))
    assert returncode != 0, "the corrupted cache loaded fine: this test corrupts nothing"

    returncode, stderr = finish(start_child(cache, tmp_path / "repaired.npy"))
    assert returncode == 0, stderr[-2000:]
    assert f"numba's cache in {cache} could not be loaded" in stderr
    np.testing.assert_array_equal(np.load(tmp_path / "repaired.npy"), np.load(parallel_runs["outputs"][0]))
    # compiled again: the swapped files hold new, loadable code, recorded as verified
    assert all(p.read_bytes() != corrupted[p] for p in swapped)
    assert json.loads((cache / STAMP_NAME).read_text())["verified"] == ["handcrafted68"]
    returncode, stderr = finish(start_child(cache, tmp_path / "plain.npy", "--plain"))
    assert returncode == 0, stderr[-2000:]
    reference = np.load(parallel_runs["outputs"][0])[0, 0, 0]
    frames = np.load(tmp_path / "plain.npy")
    np.testing.assert_allclose(frames, reference[:, : frames.shape[1]], rtol=1e-5, atol=1e-5)


def cache_dir_seen_by_child(environment: dict[str, str]) -> str:
    code = "import os, ser_lightning; print(os.environ['NUMBA_CACHE_DIR'])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_cache_folder_is_per_user_and_versioned_unless_numba_cache_dir_is_set(tmp_path):
    import librosa
    import numba

    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    environment["XDG_CACHE_HOME"] = str(tmp_path)
    versions = f"py{sys.version_info.major}.{sys.version_info.minor}-numba{numba.__version__}-librosa{librosa.__version__}"
    assert cache_dir_seen_by_child(environment) == str(tmp_path / "ser_lightning" / "numba" / versions)
    environment["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    assert cache_dir_seen_by_child(environment) == str(tmp_path / "mine")
