import multiprocessing as mp
import os
import time

import numpy as np
import pytest

from ser_lightning.data.cache import ArrayCache, cache_key, file_fingerprint


def test_build_once_then_hit(tmp_path):
    cache = ArrayCache(tmp_path)
    calls = []

    def fill(out):
        calls.append(1)
        out[:] = np.arange(12, dtype=np.float32).reshape(3, 4)

    path, built = cache.build("waveforms", "k1", (3, 4), "float32", fill, {"note": "x"})
    assert built and path.name == "waveforms-k1.npy"
    again, built_again = cache.build("waveforms", "k1", (3, 4), "float32", fill)
    assert again == path and not built_again and len(calls) == 1
    loaded = cache.load("waveforms", "k1")
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, np.arange(12).reshape(3, 4))
    assert cache.metadata("waveforms", "k1")["note"] == "x"


def test_key_changes_with_files_and_parameters(tmp_path):
    f = tmp_path / "a.wav"
    f.write_bytes(b"1234")
    before = file_fingerprint([str(f)])
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert file_fingerprint([str(f)]) != before
    assert cache_key(files="x", n_mels=64) == cache_key(n_mels=64, files="x")
    assert cache_key(files="x", n_mels=64) != cache_key(files="x", n_mels=128)


def test_failed_build_leaves_no_entry(tmp_path):
    cache = ArrayCache(tmp_path)

    def broken(out):
        out[0] = 1.0
        raise RuntimeError("decoder crashed")

    with pytest.raises(RuntimeError, match="decoder crashed"):
        cache.build("features", "k", (2, 2), "float32", broken)
    assert not cache.exists("features", "k")
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    _, built = cache.build("features", "k", (2, 2), "float32", lambda out: out.fill(2.0))
    assert built and float(cache.load("features", "k").sum()) == 8.0


def _slow_builder(directory, marker_dir, index):
    cache = ArrayCache(directory)

    def fill(out):
        (marker_dir / f"built-{index}").write_text("x")
        time.sleep(0.5)
        out[:] = index

    cache.build("waveforms", "shared", (4,), "float32", fill)


def test_concurrent_builders_make_one_copy(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_slow_builder, args=(tmp_path / "cache", markers, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(list(markers.iterdir())) == 1  # exactly one process did the work
    values = ArrayCache(tmp_path / "cache").load("waveforms", "shared")
    assert len(set(values.tolist())) == 1


def _live_builder(directory, started, release):
    def fill(out):
        started.set()
        release.wait(60)
        out[:] = 1.0

    ArrayCache(directory).build("waveforms", "live", (4,), "float32", fill)


def test_stale_temporaries_go_and_a_live_builders_stay(tmp_path):
    """Temporaries of killed builds are deleted; the one a running builder fills is not."""
    ctx = mp.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    builder = ctx.Process(target=_live_builder, args=(tmp_path, started, release))
    builder.start()
    try:
        assert started.wait(60)
        live = list(tmp_path.glob("waveforms-live.npy.tmp-*"))
        assert len(live) == 1
        stale = [
            tmp_path / "features-dead.npy.tmp-4242-0badc0de",
            tmp_path / "features-dead.npy.tmp-4242-0badc0de.json",
        ]
        for path in stale:
            path.write_bytes(b"left by a killed build")
        removed = ArrayCache(tmp_path).remove_stale_temporaries()
        assert sorted(removed) == sorted(stale) and live[0].exists()
    finally:
        release.set()
        builder.join(60)
    assert builder.exitcode == 0
    assert float(ArrayCache(tmp_path).load("waveforms", "live").sum()) == 4.0
    assert not list(tmp_path.glob("*.tmp-*"))
