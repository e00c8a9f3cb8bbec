import json
import multiprocessing as mp
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from ser_lightning.data.cache import ArrayCache, cache_key, file_fingerprint
from ser_lightning.data.cache.locks import CacheLockTimeout


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


@contextmanager
def live_builder(folder: Path):
    """A real second process that holds the lock of `waveforms-live` while it fills it, until the
    block ends; yields the process (its entry is complete and sums to 4.0 afterwards)."""
    ctx = mp.get_context("spawn")
    started, release = ctx.Event(), ctx.Event()
    builder = ctx.Process(target=_live_builder, args=(folder, started, release))
    builder.start()
    try:
        assert started.wait(60)
        yield builder
    finally:
        release.set()
        builder.join(60)
    assert builder.exitcode == 0
    assert float(ArrayCache(folder).load("waveforms", "live").sum()) == 4.0


def test_stale_temporaries_go_and_a_live_builders_stay(tmp_path):
    """Temporaries of killed builds are deleted; the one a running builder fills is not."""
    with live_builder(tmp_path):
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
    assert not list(tmp_path.glob("*.tmp-*"))


# ---------------------------------------------------------------- damaged entries


def _counting_fill(calls: list):
    """Fills 1, 2, 3, ... (all finite), counting how often it runs."""

    def fill(out):
        calls.append(1)
        out[:] = np.arange(1, out.size + 1, dtype=out.dtype).reshape(out.shape)

    return fill


def _built_entry(tmp_path, shape=(3, 4)):
    cache = ArrayCache(tmp_path)
    calls: list = []
    path, built = cache.build("waveforms", "k", shape, "float32", _counting_fill(calls))
    assert built
    return cache, path, calls


def _expected(shape=(3, 4)):
    return np.arange(1, int(np.prod(shape)) + 1, dtype=np.float32).reshape(shape)


def _flip_bit(path, offset_from_end: int, bit: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(-offset_from_end, os.SEEK_END)
        byte = handle.read(1)[0]
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte ^ (1 << bit)]))


def _rebuilt_with_warning(cache, calls, caplog, shape=(3, 4), problem=""):
    with caplog.at_level("WARNING", logger="ser_lightning.data.cache"):
        path, built = cache.build("waveforms", "k", shape, "float32", _counting_fill(calls))
    assert built and len(calls) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(str(path) in message and problem in message for message in warnings), warnings
    np.testing.assert_array_equal(cache.load("waveforms", "k"), _expected(shape))
    # and the rebuilt entry is intact: the next build reuses it
    assert not cache.build("waveforms", "k", shape, "float32", _counting_fill(calls))[1]
    assert len(calls) == 2


def test_truncated_entry_is_rebuilt_with_a_warning(tmp_path, caplog):
    cache, path, calls = _built_entry(tmp_path)
    os.truncate(path, path.stat().st_size - 8)
    with pytest.raises(ValueError, match="mmap length"):  # what a plain memory map of it does
        np.load(path, mmap_mode="r")
    _rebuilt_with_warning(cache, calls, caplog, problem="bytes")


def test_truncated_entry_is_refused_by_load_with_the_file_named(tmp_path):
    cache, path, _ = _built_entry(tmp_path)
    os.truncate(path, path.stat().st_size - 8)
    with pytest.raises(ValueError, match=f"{path}.*bytes"):
        cache.load("waveforms", "k")


def test_flipped_bit_is_detected_and_rebuilt(tmp_path, caplog):
    cache, path, calls = _built_entry(tmp_path)
    # The first value is 1.0 (0x3F800000); bit 30 set makes it 0x7F800000, infinity.
    _flip_bit(path, offset_from_end=12 * 4 - 3, bit=6)
    assert np.isinf(np.load(path, mmap_mode="r")[0, 0])
    _rebuilt_with_warning(cache, calls, caplog, problem="checksum")


def test_flipped_bit_after_a_recorded_verification_is_detected(tmp_path, caplog):
    """Once verified, an entry is trusted while its file is untouched; a write makes it checked again."""
    cache, path, calls = _built_entry(tmp_path)
    # A verification is only recorded for a file older than the file system's timestamp
    # resolution could hide a later write in; wait that long, then use the entry.
    time.sleep(2.1)
    assert not cache.build("waveforms", "k", (3, 4), "float32", _counting_fill(calls))[1]
    assert cache.verified_path("waveforms", "k").is_file()
    before = path.stat()
    _flip_bit(path, offset_from_end=7, bit=0)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # as a copy that keeps times would
    _rebuilt_with_warning(cache, calls, caplog, problem="checksum")


def test_wrong_shape_in_metadata_is_rebuilt(tmp_path, caplog):
    cache, path, calls = _built_entry(tmp_path)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["shape"] = [4, 3]
    meta_path.write_text(json.dumps(meta))
    _rebuilt_with_warning(cache, calls, caplog, problem="shape")


def test_wrong_shape_in_npy_header_is_rebuilt(tmp_path, caplog):
    cache, path, calls = _built_entry(tmp_path)
    raw = path.read_bytes()
    header = raw[: len(raw) - 12 * 4]
    swapped = header.replace(b"(3, 4)", b"(4, 3)")
    assert swapped != header and len(swapped) == len(header)
    path.write_bytes(swapped + raw[len(header) :])
    assert np.load(path, mmap_mode="r").shape == (4, 3)
    _rebuilt_with_warning(cache, calls, caplog, problem="shape")


def test_entry_of_another_shape_than_the_caller_expects_is_rebuilt(tmp_path, caplog):
    cache, _, calls = _built_entry(tmp_path, shape=(3, 4))
    _rebuilt_with_warning(cache, calls, caplog, shape=(3, 5), problem="shape")


def test_unreadable_metadata_is_rebuilt(tmp_path, caplog):
    cache, path, calls = _built_entry(tmp_path)
    path.with_suffix(".json").write_text('{"kind": "waveforms", "sha')
    _rebuilt_with_warning(cache, calls, caplog, problem="metadata")


def test_entry_without_a_checksum_is_rebuilt(tmp_path, caplog):
    """Entries written before checksums were kept cannot be verified: they are made again once."""
    cache, path, calls = _built_entry(tmp_path)
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    del meta["sha256"]
    meta_path.write_text(json.dumps(meta))
    _rebuilt_with_warning(cache, calls, caplog, problem="checksum")


def test_two_processes_finding_a_damaged_entry_rebuild_it_once(tmp_path):
    directory = tmp_path / "cache"
    cache = ArrayCache(directory)
    cache.build("waveforms", "shared", (4,), "float32", lambda out: out.fill(7.0))
    target = cache.path("waveforms", "shared")
    os.truncate(target, target.stat().st_size - 4)
    markers = tmp_path / "markers"
    markers.mkdir()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_slow_builder, args=(directory, markers, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(list(markers.iterdir())) == 1  # one process rebuilt it, the other reused that
    values = cache.load("waveforms", "shared")
    assert len(set(values.tolist())) == 1 and values[0] in (0.0, 1.0)


# ---------------------------------------------------------------- a builder that hangs


def test_waiting_for_a_hung_builder_ends_with_a_clear_error(tmp_path, caplog):
    with live_builder(tmp_path) as builder:
        lock = f"{ArrayCache(tmp_path).path('waveforms', 'live')}.lock"
        waiter = ArrayCache(tmp_path, lock_timeout=1.0)
        with caplog.at_level("INFO", logger="ser_lightning.data.cache"):
            with pytest.raises(CacheLockTimeout) as raised:
                waiter.build("waveforms", "live", (4,), "float32", lambda out: out.fill(2.0))
        message = str(raised.value)
        assert lock in message and f"process {builder.pid}" in message
        assert "data.cache_lock_timeout" in message and "kill" in message
        waits = [r.getMessage() for r in caplog.records if "waiting" in r.getMessage()]
        assert waits and lock in waits[0] and f"process {builder.pid}" in waits[0]
    # (live_builder checks that the hung builder's entry was not disturbed by the waiter giving up)


def test_lock_timeout_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="cache_lock_timeout"):
        ArrayCache(tmp_path, lock_timeout=0)
