"""The build lock of a cache entry, bounded waiting for it, and the temporaries it protects.

A builder that hangs holding a lock must not stop every other run. Waiting for a lock is
bounded (the cache's `lock_timeout`, data.cache_lock_timeout) and logged every 30 s with the
holder that wrote itself beside the lock (`<entry>.lock.holder`: pid, host, since when), and
ends with an error that names the lock and the process. A lock whose holder died is released
by the OS.

The lock also guards an entry's temporary files, which `remove_stale_temporaries` deletes (see
the package's docstring, Atomicity).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

from filelock import FileLock, Timeout

from ser_lightning.data.cache.verification import read_json, write_json_replacing

log = logging.getLogger(__name__)

WAIT_LOG_INTERVAL_S = 30.0


class CacheLockTimeout(TimeoutError):
    """Another process held a cache entry's lock for longer than this one may wait."""


def lock_path(target: Path) -> Path:
    """Name the build lock of the entry whose array file is `target`.

    Returns:
        `<target>.lock`.
    """
    return Path(f"{target}.lock")


@contextmanager
def build_lock(target: Path, timeout: float) -> Iterator[None]:
    """Hold the build lock of the entry `target`, writing down who holds it while it is held.

    Args:
        target: The entry's array file.
        timeout: How long to wait for another holder, in seconds.

    Yields:
        Nothing; the lock is held inside the block.

    Raises:
        CacheLockTimeout: If another process held the lock for longer than `timeout`.
    """
    locked, holder_path = lock_path(target), Path(f"{target}.lock.holder")
    lock = FileLock(str(locked))
    if not _acquire(lock, locked, holder_path, timeout):
        holder, pid = _holder(holder_path)
        end_it = f"end it (kill {pid})" if pid else f"end the process that has it open (fuser {locked})"
        raise CacheLockTimeout(
            f"gave up after {timeout:g} s waiting for the cache lock {locked}: {holder}. "
            "If it is still working (a large corpus, slow features), let it finish or raise "
            f"data.cache_lock_timeout; if it hangs, {end_it} and run again (the OS releases the lock "
            "when that process exits)"
        )
    try:
        write_json_replacing(
            holder_path,
            {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now().isoformat()},
        )
        yield
    finally:
        holder_path.unlink(missing_ok=True)
        lock.release()


def _acquire(lock: FileLock, locked: Path, holder_path: Path, timeout: float) -> bool:
    """Take `lock`, logging every WAIT_LOG_INTERVAL_S who holds it meanwhile.

    Returns:
        Whether the lock was taken within `timeout` seconds.
    """
    try:
        lock.acquire(timeout=0)
        return True
    except Timeout:
        pass
    log.info("waiting for the cache lock %s: %s", locked, _holder(holder_path)[0])
    started = time.monotonic()
    while (left := timeout - (time.monotonic() - started)) > 0:
        try:
            lock.acquire(timeout=min(WAIT_LOG_INTERVAL_S, left))
            return True
        except Timeout:
            waited = time.monotonic() - started
            if waited < timeout:
                log.info(
                    "still waiting for the cache lock %s after %.0f s (at most %g s): %s",
                    locked,
                    waited,
                    timeout,
                    _holder(holder_path)[0],
                )
    return False


def remove_stale_temporaries(directory: Path, held: Path | None = None) -> list[Path]:
    """Delete the temporary files in `directory` that no live builder is writing.

    A temporary belongs to the entry named before `.tmp-`; it is stale when that entry's
    lock can be taken now, or is `held` by the caller.

    Args:
        directory: The cache's folder.
        held: The entry whose lock the caller holds, or None.

    Returns:
        The removed files.
    """
    removed: list[Path] = []
    by_target: dict[Path, list[Path]] = {}
    for tmp in directory.glob("*.npy.tmp-*"):
        by_target.setdefault(tmp.with_name(tmp.name.split(".tmp-")[0]), []).append(tmp)
    for target, temporaries in by_target.items():
        try:
            with nullcontext() if target == held else FileLock(str(lock_path(target)), timeout=0):
                for tmp in temporaries:
                    tmp.unlink(missing_ok=True)
                    removed.append(tmp)
        except Timeout:  # a live builder holds it: its files are not stale
            continue
    if removed:
        log.info("removed %d temporary cache files left by interrupted builds", len(removed))
    return removed


def _holder(holder_path: Path) -> tuple[str, int | None]:
    """Tell who holds a lock, as the holder wrote beside it.

    The file is data: it is only ever shown, never acted on.

    Returns:
        The holder in words, and its pid when it is a live local process (else None).
    """
    holder = read_json(holder_path)
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
