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

Verification: a complete entry is still only data on a disk. Every use checks the metadata
names the entry with the shape and dtype the caller expects, and that the file agrees with it;
`build` also checks its bytes against the checksum taken when it was built, recorded so that an
unchanged file is not hashed again (`verification`). A damaged entry is rebuilt, with a warning
naming the file and what was wrong, under the same lock as a first build.

Waiting: waiting for another builder's lock is bounded (`lock_timeout`,
data.cache_lock_timeout), logged with the holder, and ends with an error that names the lock
and the process (`locks`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ser_lightning.data.cache.locks import build_lock, remove_stale_temporaries
from ser_lightning.data.cache.verification import CHECKSUM, checksum_problem, file_digest, layout_problem
from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.files import atomic_write

log = logging.getLogger(__name__)

# How long a build waits for another process's build of the same entry (data.cache_lock_timeout).
# Half an hour, torch.distributed's own default for ranks waiting on each other: far beyond a
# normal build (the demo corpus takes seconds), short enough that a hung builder is noticed.
DEFAULT_LOCK_TIMEOUT_S = 1800.0


class DamagedCacheEntry(ValueError):
    """A complete cache entry whose file does not agree with its metadata."""


def file_fingerprint(paths: Iterable[str]) -> str:
    """Hash (path, size, mtime) of every file: it changes when any file is added, removed or edited.

    Args:
        paths: the files, in a stable order (the order is part of the hash).

    Returns:
        The SHA-256 hex digest.
    """
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_key(**parts: object) -> str:
    """Hash everything that determines a cache entry's bytes into a short stable key.

    Args:
        **parts: the values that determine the bytes (JSON-encoded with sorted keys; other
            types by `str`).

    Returns:
        The first 20 hex digits of their SHA-256.
    """
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class ArrayCache:
    """A folder of named, content-addressed numpy arrays."""

    def __init__(self, directory: str | Path, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S):
        if not lock_timeout > 0:
            raise InvalidSetting(
                f"data.cache_lock_timeout={lock_timeout} must be a positive number of seconds (how long "
                "to wait for another process building the same cache entry)"
            )
        self.directory = Path(directory).expanduser()
        self.lock_timeout = float(lock_timeout)

    def path(self, kind: str, key: str) -> Path:
        """Name an entry's array file.

        Returns:
            `<directory>/<kind>-<key>.npy`.
        """
        return self.directory / f"{kind}-{key}.npy"

    def verified_path(self, kind: str, key: str) -> Path:
        """Name the file that records the last verification of an entry.

        Returns:
            `<directory>/<kind>-<key>.verified.json`.
        """
        return self.directory / f"{kind}-{key}.verified.json"

    def exists(self, kind: str, key: str) -> bool:
        """Tell whether an entry has been built.

        Returns:
            Whether its array file is there (builds rename it into place only when complete).
        """
        return self.path(kind, key).is_file()

    def load(self, kind: str, key: str) -> np.ndarray:
        """Memory-map a complete entry read-only (no copy, shared between processes by the OS).

        Refuses an entry whose size, shape or dtype disagree with its metadata (the checksum is
        `build`'s to check: it runs before every load and can rebuild).

        Args:
            kind: the entry's kind (e.g. `waveforms`).
            key: the entry's key (`cache_key`).

        Returns:
            The array, memory-mapped read-only.

        Raises:
            FileNotFoundError: when the entry has not been built.
            DamagedCacheEntry: when its file disagrees with its metadata.
        """
        target = self.path(kind, key)
        if not target.is_file():
            raise FileNotFoundError(f"no cache entry {target}; build it first")
        problem = self.damage(kind, key, checksum=False)
        if problem is not None:
            raise DamagedCacheEntry(
                f"cache entry {target} is damaged: {problem}. Run again: the next build finds it "
                "damaged and rebuilds it (or delete the file)"
            )
        return np.load(target, mmap_mode="r")

    def metadata(self, kind: str, key: str) -> dict:
        """Read an entry's `.json`, which says what it holds.

        Returns:
            The parsed metadata: kind, key, shape, dtype, checksum, and what its builder added.
        """
        return json.loads(self.path(kind, key).with_suffix(".json").read_text())

    def damage(
        self,
        kind: str,
        key: str,
        shape: tuple[int, ...] | None = None,
        dtype: str | None = None,
        checksum: bool = True,
    ) -> str | None:
        """What is wrong with a complete entry, or None when it is intact.

        Checks that the metadata names this entry, with the `shape` and `dtype` the caller expects
        (when given), that the npy header agrees and the file has the size they make; with
        `checksum`, that the file's bytes hash to the checksum taken when it was built (skipped
        while a verification recorded for this very file still holds).

        Args:
            kind: the entry's kind.
            key: the entry's key.
            shape: the shape the caller expects, or None to accept the metadata's.
            dtype: the dtype the caller expects, or None to accept the metadata's.
            checksum: whether to check the bytes against the recorded checksum.

        Returns:
            What is wrong, in words, or None when the entry is intact.
        """  # noqa: DOC501 - the TypeError is raised and caught inside, to report unreadable metadata
        target = self.path(kind, key)
        try:
            meta = self.metadata(kind, key)
            if not isinstance(meta.get("shape"), list):
                raise TypeError(f"shape {meta.get('shape')!r} is not a list")
            layout = (tuple(int(n) for n in meta["shape"]), np.dtype(meta["dtype"]))
            named = (meta["kind"], meta["key"])
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            return f"its metadata {target.with_suffix('.json')} cannot be read ({type(err).__name__}: {err})"
        if named != (kind, key):
            return f"its metadata describes the entry {named}"
        if layout[1].hasobject:
            return (
                f"its metadata names the dtype {layout[1]}, which holds Python objects; this cache never does"
            )
        if shape is not None and layout[0] != tuple(shape):
            return f"it holds an array of shape {layout[0]}, this run needs {tuple(shape)}"
        if dtype is not None and layout[1] != np.dtype(dtype):
            return f"it holds {layout[1]}, this run needs {np.dtype(dtype)}"
        problem = layout_problem(target, *layout)
        if problem is not None or not checksum:
            return problem
        expected = meta.get(CHECKSUM)
        if not isinstance(expected, str):
            return (
                "its metadata has no checksum (written by an older version), so its bytes cannot be verified"
            )
        return checksum_problem(target, self.verified_path(kind, key), expected)

    def build(
        self,
        kind: str,
        key: str,
        shape: tuple[int, ...],
        dtype: str,
        fill: Callable[[np.ndarray], None],
        metadata: dict | None = None,
    ) -> tuple[Path, bool]:
        """Create the entry unless an intact one exists.

        An existing entry is verified first (`damage`); a damaged one is rebuilt, with a warning.
        `fill` receives a writable memory-mapped array of `shape` and must fill all of it; a dict
        it returns is added to the entry's metadata (e.g. what it found while filling). The
        build holds the entry's lock, waiting at most `lock_timeout` for another builder
        (`locks.CacheLockTimeout` after that).

        Args:
            kind: the entry's kind.
            key: the entry's key.
            shape: the array's shape.
            dtype: the array's dtype.
            fill: fills the array; may return a dict for the metadata.
            metadata: more to record in the entry's metadata.

        Returns:
            (path, built_now): the entry's file, and whether this call built it.
        """
        target = self.path(kind, key)
        shape = tuple(int(n) for n in shape)
        damage = None
        if target.is_file():
            damage = self.damage(kind, key, shape, dtype)
            if damage is None:
                return target, False
            log.warning("cache entry %s is damaged: %s; rebuilding it", target, damage)
        self.directory.mkdir(parents=True, exist_ok=True)
        with build_lock(target, self.lock_timeout):
            if target.is_file():
                # another process finished it, or repaired it, while we waited
                now = self.damage(kind, key, shape, dtype)
                if now is None:
                    return target, False
                if damage is None:
                    log.warning("cache entry %s is damaged: %s; rebuilding it", target, now)
                self._remove_entry(kind, key)
            self.remove_stale_temporaries(held=target)
            with atomic_write(target, sync=True) as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
                found = fill(out)
                out.flush()
                del out
                meta = {"kind": kind, "key": key, "shape": list(shape), "dtype": dtype, **(metadata or {})}
                meta.update(found or {})
                meta[CHECKSUM] = file_digest(tmp)  # what later uses check the bytes against
                # The metadata's temporary is named after the array's, so that both count as
                # this entry's temporaries; it lands first, and the array from the instant the
                # outer block ends, complete.
                meta_tmp = tmp.with_name(tmp.name + ".json")
                with atomic_write(target.with_suffix(".json"), temporary=meta_tmp, sync=True):
                    meta_tmp.write_text(json.dumps(meta, indent=2, default=str))
        return target, True

    def _remove_entry(self, kind: str, key: str) -> None:
        """Delete a damaged entry (called holding its lock): until rebuilt, readers find none."""
        target = self.path(kind, key)
        for path in (target, target.with_suffix(".json"), self.verified_path(kind, key)):
            path.unlink(missing_ok=True)

    def remove_stale_temporaries(self, held: Path | None = None) -> list[Path]:
        """Delete the temporary files in the cache's folder that no live builder is writing.

        As `locks.remove_stale_temporaries` does for this cache's folder.

        Args:
            held: the entry whose lock the caller holds, or None.

        Returns:
            The removed files.
        """
        return remove_stale_temporaries(self.directory, held)
