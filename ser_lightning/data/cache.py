"""Content-addressed array caches: built once, written atomically, memory-mapped by every rank.

A cache entry is one `.npy` file named `<kind>-<key>.npy` plus a `.json` that says what it
holds. The key hashes the file list (path, size, mtime) and every parameter that changes the
bytes, so a changed file or setting makes a new entry and a stale one is never read.

Atomicity: the array is filled into a temporary file beside the target and renamed into
place only when complete; a killed build leaves at most a `*.tmp-*` file that no reader
opens. A file lock around the build makes two concurrent builders end with one copy: the
second waits and then finds the entry done.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from filelock import FileLock


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

        `fill` receives a writable memory-mapped array of `shape` and must fill all of it.
        """
        target = self.path(kind, key)
        if target.is_file():
            return target, False
        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if target.is_file():  # another process finished it while we waited
                return target, False
            tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            try:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
                fill(out)
                out.flush()
                del out
                meta = {"kind": kind, "key": key, "shape": list(shape), "dtype": dtype, **(metadata or {})}
                meta_tmp = tmp.with_name(tmp.name + ".json")
                meta_tmp.write_text(json.dumps(meta, indent=2, default=str))
                os.replace(meta_tmp, target.with_suffix(".json"))
                os.replace(tmp, target)  # the entry exists from this instant, complete
            finally:
                for leftover in (tmp, tmp.with_name(tmp.name + ".json")):
                    if leftover.exists():
                        leftover.unlink()
        return target, True
