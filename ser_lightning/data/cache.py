"""Content-addressed array caches: built once, written atomically, memory-mapped by every rank.

A cache entry is one `.npy` file named `<kind>-<key>.npy` plus a `.json` that says what it
holds. The key hashes the file list (path, size, mtime) and every parameter that changes the
bytes, so a changed file or setting makes a new entry and a stale one is never read.

Atomicity: the array is filled into a temporary file beside the target, flushed to disk and
renamed into place only when complete; a killed build leaves at most a `*.tmp-*` file that no
reader opens. A file lock around the build makes two concurrent builders end with one copy:
the second waits and then finds the entry done. Temporary files are only ever written by the
holder of their entry's lock, so whoever holds (or can take) that lock may delete them: the
next build removes what a killed one left, and never a file a live builder is writing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

log = logging.getLogger(__name__)


def file_fingerprint(paths: Iterable[str]) -> str:
    """Hash of (path, size, mtime) for every file: changes when any file is added, removed or edited."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_key(**parts) -> str:
    """A short stable hash of everything that determines a cache entry's bytes."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class ArrayCache:
    """A folder of named, content-addressed numpy arrays."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser()

    def path(self, kind: str, key: str) -> Path:
        return self.directory / f"{kind}-{key}.npy"

    def exists(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_file()

    def load(self, kind: str, key: str) -> np.ndarray:
        """Memory-map a complete entry read-only (no copy, shared between processes by the OS)."""
        return np.load(self.path(kind, key), mmap_mode="r")

    def metadata(self, kind: str, key: str) -> dict:
        return json.loads(self.path(kind, key).with_suffix(".json").read_text())

    def build(
        self,
        kind: str,
        key: str,
        shape: tuple[int, ...],
        dtype: str,
        fill: Callable[[np.ndarray], None],
        metadata: dict | None = None,
    ) -> tuple[Path, bool]:
        """Create the entry unless it exists. Returns (path, built_now).

        `fill` receives a writable memory-mapped array of `shape` and must fill all of it; a dict
        it returns is added to the entry's metadata (e.g. what it found while filling).
        """
        target = self.path(kind, key)
        if target.is_file():
            return target, False
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if target.is_file():  # another process finished it while we waited
                return target, False
            self.remove_stale_temporaries(held=target)
            tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
                found = fill(out)
                out.flush()
                del out
                _fsync(tmp)
                meta = {"kind": kind, "key": key, "shape": list(shape), "dtype": dtype, **(metadata or {})}
                meta.update(found or {})
                meta_tmp = tmp.with_name(tmp.name + ".json")
                meta_tmp.write_text(json.dumps(meta, indent=2, default=str))
                _fsync(meta_tmp)
                os.replace(meta_tmp, target.with_suffix(".json"))
                os.replace(tmp, target)  # the entry exists from this instant, complete
            finally:
                for leftover in (tmp, tmp.with_name(tmp.name + ".json")):
                    if leftover.exists():
                        leftover.unlink()
        return target, True

    def remove_stale_temporaries(self, held: Path | None = None) -> list[Path]:
        """Delete temporary files that no live builder is writing; returns what was removed.

        A temporary belongs to the entry named before `.tmp-`; it is stale when that entry's
        lock can be taken now, or is `held` by the caller.
        """
        removed: list[Path] = []
        by_target: dict[Path, list[Path]] = {}
        for tmp in self.directory.glob("*.npy.tmp-*"):
            by_target.setdefault(tmp.with_name(tmp.name.split(".tmp-")[0]), []).append(tmp)
        for target, temporaries in by_target.items():
            try:
                with nullcontext() if target == held else FileLock(str(target) + ".lock", timeout=0):
                    for tmp in temporaries:
                        tmp.unlink(missing_ok=True)
                        removed.append(tmp)
            except Timeout:  # a live builder holds it: its files are not stale
                continue
        if removed:
            log.info("removed %d temporary cache files left by interrupted builds", len(removed))
        return removed


def _fsync(path: Path) -> None:
    """Push a file's bytes to disk before it is renamed into place (survives power loss too)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
