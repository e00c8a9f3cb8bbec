"""Unpacking a verified archive into a corpus folder, and the record that says it is complete.

The archive is extracted into a temporary folder beside the corpus first and its entries are
moved in only then; the folder gets its completion record last, so that a failure leaves nothing
that looks complete. Staging folders of unpacks that were killed are removed before the next one.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ser_lightning.data.download.transfer import Archive
from ser_lightning.utils.files import atomic_write, unique_token

COMPLETION_RECORD = ".ser_lightning-download.json"
# Prefix of the folder an archive is unpacked into before its entries are moved into place.
STAGING_PREFIX = ".unpack-"


def remove_stale_staging(dest: Path, say: Callable[[str], None] = print) -> None:
    """Remove the staging folders of unpacks that were killed: corpus scans would find their copies.

    Args:
        dest: the corpus folder.
        say: where messages go.
    """
    for leftover in sorted(dest.glob(STAGING_PREFIX + "*")):
        if leftover.is_dir():
            say(f"removing {leftover}, left by an unpack that was stopped")
            shutil.rmtree(leftover)


def unpack(zip_path: Path, dest: Path) -> int:
    """Extract into a temporary folder beside `dest`'s contents, then move the entries in.

    Entries of `dest` with the same names are replaced.

    Args:
        zip_path: the verified archive.
        dest: the corpus folder.

    Returns:
        The number of files unpacked.
    """
    staging = dest / f"{STAGING_PREFIX}{unique_token()}"
    try:
        with zipfile.ZipFile(zip_path) as bundle:
            bundle.extractall(staging)
            count = sum(1 for info in bundle.infolist() if not info.is_dir())
        for entry in sorted(staging.iterdir()):
            target = dest / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            entry.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count


def read_completion(dest: Path) -> dict | None:
    """The completion record of a corpus folder.

    Args:
        dest: the corpus folder.

    Returns:
        The record (the archive's fields, the file count and when it was unpacked), or None when
        there is none or it cannot be read.
    """
    record = dest / COMPLETION_RECORD
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text())
    except json.JSONDecodeError:
        return None


def write_completion(dest: Path, archive: Archive, files: int) -> None:
    """Write the completion record of a corpus folder, atomically, as the last step of an unpack.

    Args:
        dest: the corpus folder.
        archive: the archive unpacked into it.
        files: the number of files unpacked.
    """
    record = {**asdict(archive), "files": files, "unpacked": time.strftime("%Y-%m-%d %H:%M:%S")}
    with atomic_write(dest / COMPLETION_RECORD) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
