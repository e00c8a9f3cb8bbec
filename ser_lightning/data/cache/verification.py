"""Checking that a complete cache entry's file still holds what its metadata says.

A complete entry is still only data on a disk, which a copy that stopped midway, a full disk or
a stray write can change. Every use checks what costs a `stat` and a few small reads: the npy
header agrees with the metadata, and the file has exactly the size they make
(`layout_problem`). A build also compares the SHA-256 of the file with the one taken when it
was built (`checksum_problem`); a verification is recorded beside the entry
(`<entry>.verified.json`, with the file's inode, size, mtime and ctime), and while those stay
the same the entry is not hashed again (hashing the demo corpus' two caches costs 0.34-0.44 s
a run on 2 cores, more than the rest of a warm setup, 0.27 s: experiments/benchmarks/
cache_verification.py; it grows with the corpus, a recorded check stays ~0.1 ms). Any write
through the file system changes the ctime, so a truncated, extended or edited entry is always
hashed again; what a recorded verification cannot see is a change that bypasses the file system
(a failing disk returning other bytes for an untouched file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ser_lightning.utils.files import atomic_write

log = logging.getLogger(__name__)

# A verification is recorded only for a file last changed this long before it was hashed: a
# write within the same file-system timestamp tick would otherwise leave mtime and ctime as
# recorded and go unnoticed. 2 s is the coarsest timestamp in use (FAT); ext4, xfs, tmpfs and
# NFS tick in milliseconds or less.
UNSETTLED_S = 2.0
CHECKSUM = "sha256"


def layout_problem(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
    """Check a .npy file's header and size against the shape and dtype it should hold.

    Args:
        path: The entry's array file.
        shape: The shape its metadata names.
        dtype: The dtype its metadata names.

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


def checksum_problem(target: Path, record: Path, expected: str) -> str | None:
    """Check a file's bytes against the checksum taken when it was built.

    Skipped while the verification recorded in `record` still holds for this very file; a
    verification that passes is recorded there once the file has settled (UNSETTLED_S).

    Args:
        target: The entry's array file.
        record: Where its last verification is recorded.
        expected: The CHECKSUM hex digest from its metadata.

    Returns:
        What is wrong, in words, or None when the bytes match.
    """
    stamp = _stamp(target)
    if read_json(record) == {CHECKSUM: expected, "stamp": stamp}:
        return None  # verified before, and the file has not been written since
    hashed_at = time.time()
    actual = file_digest(target)
    if actual != expected:
        return (
            f"its bytes do not match the checksum taken when it was built ({CHECKSUM} {actual[:16]}..., "
            f"expected {expected[:16]}...)"
        )
    if hashed_at - stamp[-1] / 1e9 >= UNSETTLED_S:
        write_json_replacing(record, {CHECKSUM: expected, "stamp": stamp})
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


def read_json(path: Path) -> Any:
    """Read a small JSON record (a verification, a lock's holder).

    Returns:
        Its content, or None when it is missing or unreadable.
    """
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json_replacing(path: Path, data: dict) -> None:
    """Write a small record atomically; it only saves work, so a read-only folder just skips it."""
    try:
        with atomic_write(path) as tmp:
            tmp.write_text(json.dumps(data))
    except OSError as err:
        log.debug("could not write %s: %s", path, err)
