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

Verification: a complete entry is still only data on a disk, which a copy that stopped midway,
a full disk or a stray write can change. Every use checks what costs a `stat` and a few small
reads: the metadata names the entry with the shape and dtype the caller expects, the npy header
agrees, and the file has exactly the size they make. `build` also compares the SHA-256 of the
file with the one taken when it was built; a verification is recorded beside the entry
(`<entry>.verified.json`, with the file's inode, size, mtime and ctime), and while those stay
the same the entry is not hashed again (hashing the demo corpus' two caches costs 0.34-0.44 s
a run on 2 cores, more than the rest of a warm setup, 0.27 s: experiments/benchmarks/
cache_verification.py; it grows with the corpus, a recorded check stays ~0.1 ms). Any write
through the file system changes the ctime, so a truncated, extended or edited entry is always
hashed again; what a recorded verification cannot see is a change that bypasses the file system
(a failing disk returning other bytes for an untouched file). A damaged entry is rebuilt, with a
warning naming the file and what was wrong, under the same lock as a first build.

Waiting: a builder that hangs holding a lock must not stop every other run. Waiting for a lock
is bounded (`lock_timeout`, data.cache_lock_timeout) and logged every 30 s with the holder that
wrote itself beside the lock (`<entry>.lock.holder`: pid, host, since when), and ends with an
error that names the lock and the process. A lock whose holder died is released by the OS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from ser_lightning.utils.errors import InvalidSetting
from ser_lightning.utils.files import atomic_write

log = logging.getLogger(__name__)

# How long a build waits for another process's build of the same entry (data.cache_lock_timeout).
# Half an hour, torch.distributed's own default for ranks waiting on each other: far beyond a
# normal build (the demo corpus takes seconds), short enough that a hung builder is noticed.
DEFAULT_LOCK_TIMEOUT_S = 1800.0
WAIT_LOG_INTERVAL_S = 30.0
# A verification is recorded only for a file last changed this long before it was hashed: a
# write within the same file-system timestamp tick would otherwise leave mtime and ctime as
# recorded and go unnoticed. 2 s is the coarsest timestamp in use (FAT); ext4, xfs, tmpfs and
# NFS tick in milliseconds or less.
UNSETTLED_S = 2.0
CHECKSUM = "sha256"


class CacheLockTimeout(TimeoutError):
    """Another process held a cache entry's lock for longer than this one may wait."""


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


def cache_key(**parts) -> str:
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
        problem = _layout_problem(target, *layout)
        if problem is not None or not checksum:
            return problem
        expected = meta.get(CHECKSUM)
        if not isinstance(expected, str):
            return (
                "its metadata has no checksum (written by an older version), so its bytes cannot be verified"
            )
        return self._checksum_problem(kind, key, expected)

    def _checksum_problem(self, kind: str, key: str, expected: str) -> str | None:
        target, record = self.path(kind, key), self.verified_path(kind, key)
        stamp = _stamp(target)
        if _read_json(record) == {CHECKSUM: expected, "stamp": stamp}:
            return None  # verified before, and the file has not been written since
        hashed_at = time.time()
        actual = file_digest(target)
        if actual != expected:
            return (
                f"its bytes do not match the checksum taken when it was built ({CHECKSUM} {actual[:16]}..., "
                f"expected {expected[:16]}...)"
            )
        if hashed_at - stamp[-1] / 1e9 >= UNSETTLED_S:
            _write_json_replacing(record, {CHECKSUM: expected, "stamp": stamp})
        return None

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
        (CacheLockTimeout after that).

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
        with self._locked(target):
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

    @contextmanager
    def _locked(self, target: Path) -> Iterator[None]:
        """Hold the entry's build lock, waiting at most `lock_timeout` for another holder."""
        lock_path, holder_path = Path(f"{target}.lock"), Path(f"{target}.lock.holder")
        lock = FileLock(str(lock_path))
        self._acquire(lock, lock_path, holder_path)
        try:
            _write_json_replacing(
                holder_path,
                {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now().isoformat()},
            )
            yield
        finally:
            holder_path.unlink(missing_ok=True)
            lock.release()

    def _acquire(self, lock: FileLock, lock_path: Path, holder_path: Path) -> None:
        try:
            lock.acquire(timeout=0)
            return
        except Timeout:
            pass
        log.info("waiting for the cache lock %s: %s", lock_path, _holder(holder_path)[0])
        started = time.monotonic()
        while (left := self.lock_timeout - (time.monotonic() - started)) > 0:
            try:
                lock.acquire(timeout=min(WAIT_LOG_INTERVAL_S, left))
                return
            except Timeout:
                waited = time.monotonic() - started
                if waited < self.lock_timeout:
                    log.info(
                        "still waiting for the cache lock %s after %.0f s (at most %g s): %s",
                        lock_path,
                        waited,
                        self.lock_timeout,
                        _holder(holder_path)[0],
                    )
        holder, pid = _holder(holder_path)
        end_it = f"end it (kill {pid})" if pid else f"end the process that has it open (fuser {lock_path})"
        raise CacheLockTimeout(
            f"gave up after {self.lock_timeout:g} s waiting for the cache lock {lock_path}: {holder}. "
            "If it is still working (a large corpus, slow features), let it finish or raise "
            f"data.cache_lock_timeout; if it hangs, {end_it} and run again (the OS releases the lock "
            "when that process exits)"
        )

    def remove_stale_temporaries(self, held: Path | None = None) -> list[Path]:
        """Delete temporary files that no live builder is writing.

        A temporary belongs to the entry named before `.tmp-`; it is stale when that entry's
        lock can be taken now, or is `held` by the caller.

        Args:
            held: the entry whose lock the caller holds, or None.

        Returns:
            The removed files.
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


def _layout_problem(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
    """Check a .npy file's header and size against the shape and dtype it should hold.

    Returns:
        How they disagree, in words, or None when they agree.
    """
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in readers:
                return f"its npy header has format version {version}, which this cache never writes"
            header_shape, fortran_order, header_dtype = readers[version](handle)
            data_offset = handle.tell()
            size = os.fstat(handle.fileno()).st_size
    except (OSError, ValueError) as err:
        return f"its npy header cannot be read ({err})"
    if (header_shape, header_dtype, fortran_order) != (shape, dtype, False):
        return (
            f"its npy header says shape {header_shape} {header_dtype}"
            f"{' (Fortran order)' if fortran_order else ''}, its metadata shape {shape} {dtype}"
        )
    expected = data_offset + math.prod(shape) * dtype.itemsize
    if size != expected:
        return f"the file has {size} bytes, its header and metadata make {expected} (cut short or added to)"
    return None


def _stamp(path: Path) -> list[int]:
    """Take what any write through the file system changes (ctime last: the OS sets it, nobody else can).

    Returns:
        The file's device, inode, size, mtime and ctime (nanoseconds).
    """
    stat = path.stat()
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def file_digest(path: str | Path) -> str:
    """Hash a file's bytes, read in chunks.

    Args:
        path: the file.

    Returns:
        The CHECKSUM (SHA-256) hex digest.
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, CHECKSUM).hexdigest()


def _read_json(path: Path):
    """Read a small JSON file.

    Returns:
        Its content, or None when it is missing or unreadable.
    """
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json_replacing(path: Path, data: dict) -> None:
    """Write a small record atomically; it only saves work, so a read-only folder just skips it."""
    try:
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(data))
    except OSError as err:
        log.debug("could not write %s: %s", path, err)


def _holder(holder_path: Path) -> tuple[str, int | None]:
    """Tell who holds a lock, as the holder wrote beside it.

    The file is data: it is only ever shown, never acted on.

    Returns:
        The holder in words, and its pid when it is a live local process (else None).
    """
    holder = _read_json(holder_path)
    try:
        pid, host = int(holder["pid"]), str(holder.get("host"))
    except (TypeError, KeyError, ValueError):
        return f"another process holds it (and has not written {holder_path.name} yet)", None
    if host == socket.gethostname() and not _running(pid):
        # its lock went with it; whoever holds the lock now has not written itself down yet
        return f"another process holds it (the last recorded holder, process {pid}, is gone)", None
    building = holder_path.name.removesuffix(".lock.holder")
    return f"process {pid} on {host} holds it, building {building} since {holder.get('since')}", pid


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
