"""What verifying a cache entry costs, on caches the size of the demo corpus'.

Every use of an entry checks its metadata, npy header and file size; `build` also hashes the
file against the checksum taken when it was built, unless a verification recorded for that
very file (inode, size, mtime, ctime) still holds. This script measures, per entry:

- the checksum at build time (one more pass over the file just written),
- the full verification (first use after a build, or after the file was written to), with the
  file in the page cache (warm) and evicted from it (cold: read from disk, as in a fresh run),
- the check that replaces it once a verification is recorded,
- SHA-256 (the one kept), BLAKE2b and CRC-32 over the waveform file, for the choice of hash.

The arrays hold random float32 data in the shapes `data=demo` makes at full size (1440 clips of
3 s at 16 kHz; log-mel (1, 64, 94) per clip): hashing cost depends on the bytes, not on what
they are, so no corpus is decoded.

    python experiments/benchmarks/cache_verification.py [--clips 1440] [--seconds 3] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ser_lightning.data.cache import ArrayCache
from ser_lightning.data.cache.verification import CHECKSUM


def seconds(fn: Callable[[], object], repeats: int, before: Callable[[], None] = lambda: None) -> float:
    """Median wall time of fn over repeats, running before() untimed ahead of each call."""
    times = []
    for _ in range(repeats):
        before()
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def evict(path: Path) -> None:
    """Drop one file's pages from the page cache (only that file), so the next read is from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def crc32(path: Path) -> int:
    value = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            value = zlib.crc32(block, value)
    return value


def file_hash(path: Path, algorithm: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def random_fill(seed: int) -> Callable[[np.ndarray], None]:
    def fill(out: np.ndarray) -> None:
        rng = np.random.default_rng(seed)
        for start in range(0, len(out), 256):
            block = out[start : start + 256]
            block[:] = rng.standard_normal(block.shape, dtype=np.float32)

    return fill


def forget_verification(cache: ArrayCache, kind: str) -> None:
    cache.verified_path(kind, "bench").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=1440, help="rows of both caches (data=demo: 1440)")
    parser.add_argument("--seconds", type=float, default=3.0, help="clip length (data.duration)")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--repeats", type=int, default=5, help="timings per measurement (median)")
    parser.add_argument("--work-dir", default=None, help="where the caches are written (default: a temp dir)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="cache_verification-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = ArrayCache(work / "cache")
    frames = (
        int(round(args.seconds * args.sample_rate)) // 512 + 1
    )  # log-mel frames, hop 512 (features=logmel)
    entries = {
        "waveforms": (args.clips, int(round(args.seconds * args.sample_rate))),
        "features": (args.clips, 1, 64, frames),
    }
    rows = []
    try:
        for seed, (kind, shape) in enumerate(entries.items()):
            started = time.perf_counter()
            path, _ = cache.build(kind, "bench", shape, "float32", random_fill(seed))
            build_s = time.perf_counter() - started
            hash_at_build = seconds(lambda p=path: file_hash(p, CHECKSUM), args.repeats)

            def full(kind=kind, shape=shape) -> None:
                assert cache.damage(kind, "bench", shape, "float32") is None

            # An entry is only recorded as verified once its file is a few seconds old: wait for that.
            time.sleep(max(0.0, 2.1 - (time.time() - path.stat().st_ctime)))
            warm = seconds(full, args.repeats, before=lambda k=kind: forget_verification(cache, k))
            cold = seconds(
                full, args.repeats, before=lambda k=kind, p=path: (forget_verification(cache, k), evict(p))
            )
            full()  # records the verification
            assert cache.verified_path(kind, "bench").is_file()
            recorded = seconds(full, max(args.repeats, 20))
            rows.append(
                (kind, shape, path.stat().st_size / 1e6, build_s, hash_at_build, warm, cold, recorded)
            )

        waveforms = cache.path("waveforms", "bench")
        mb = waveforms.stat().st_size / 1e6
        hashes = {
            name: seconds(fn, args.repeats)
            for name, fn in {
                "sha256 (kept)": lambda: file_hash(waveforms, "sha256"),
                "blake2b": lambda: file_hash(waveforms, "blake2b"),
                "crc32": lambda: crc32(waveforms),
            }.items()
        }
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()[0]

    print("## Cache verification cost (demo-corpus-size caches)\n")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"numpy {np.__version__}; load average {load_before:.1f} before, {load_after:.1f} after; "
        f"median of {args.repeats} (recorded: of {max(args.repeats, 20)})\n"
    )
    print(
        "| entry | shape | MB | build (fill + write + checksum) s | checksum (at build) s "
        "| full verification, warm s | full verification, cold s | recorded verification ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind, shape, size, build_s, at_build, warm, cold, recorded in rows:
        print(
            f"| {kind} | {shape} | {size:.1f} | {build_s:.3g} | {at_build:.3g} | {warm:.3g} | {cold:.3g} "
            f"| {recorded * 1000:.2f} |"
        )
    total = {name: sum(row[i] for row in rows) for name, i in (("warm", 5), ("cold", 6), ("recorded", 7))}
    print(
        f"\nboth entries: full verification {total['warm']:.2f} s warm, {total['cold']:.2f} s cold; "
        f"recorded {total['recorded'] * 1000:.1f} ms\n"
    )
    print(f"### Hashes over the waveform file ({mb:.0f} MB, in the page cache)\n")
    print("| hash | s | GB/s |")
    print("|---|---|---|")
    for name, s in hashes.items():
        print(f"| {name} | {s:.3g} | {mb / 1000 / s:.2f} |")


if __name__ == "__main__":
    main()
