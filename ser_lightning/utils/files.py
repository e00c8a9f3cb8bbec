"""Writing files and folders so that a reader sees the old one or the new one, never half of one.

Everything is written under a temporary name beside its target (same folder, so the same file
system) and renamed onto the target only once complete; the rename is atomic. Any exception,
including KeyboardInterrupt, removes the temporary and leaves the target as it was. A process
killed outright leaves at most the temporary, whose name (see `temporary_beside`) says which
target it belongs to so that the next writer can find and remove it (`temporaries_beside`).

    with atomic_write(path) as tmp:
        tmp.write_text(text)
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# `{name}` is the target's file name, `{token}` what makes the temporary unique to its writer.
TEMPORARY_TEMPLATE = "{name}.tmp-{token}"
# The characters of a token (process id and random hex, joined by "-"); no dots, so that the
# temporaries of a target `x` and of a neighbour `x.y` are never taken for each other.
_TOKEN_PATTERN = "[A-Za-z0-9_-]+"


def unique_token() -> str:
    """A token for a temporary name, distinct between processes and between the writes of one.

    Returns:
        `<pid>-<8 hex digits>`.
    """
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def temporary_beside(path: str | Path, template: str = TEMPORARY_TEMPLATE) -> Path:
    """A fresh name in `path`'s folder, `template` filled with `path`'s name and a unique token.

    Returns:
        The temporary's path (nothing is created).
    """
    path = Path(path)
    return path.with_name(template.format(name=path.name, token=unique_token()))


def temporaries_beside(path: str | Path, template: str = TEMPORARY_TEMPLATE) -> list[Path]:
    """The existing temporaries `temporary_beside(path, template)` could have named, sorted.

    Returns:
        The matching paths in `path`'s folder, sorted; empty when the folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    marker = "\0"
    escaped = re.escape(template.format(name=path.name, token=marker))
    pattern = re.compile("^" + escaped.replace(re.escape(marker), _TOKEN_PATTERN) + "$")
    return sorted(p for p in path.parent.iterdir() if pattern.match(p.name))


def fsync_file(path: str | Path) -> None:
    """Push a file's bytes to disk, so that a rename after it survives a power loss too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree if it exists (nothing to do when it does not)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_write(
    path: str | Path,
    template: str = TEMPORARY_TEMPLATE,
    temporary: str | Path | None = None,
    sync: bool = False,
) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on a clean exit it is renamed onto `path`.

    The caller creates the file (nothing exists at the temporary path yet). `temporary` gives
    the name outright instead of `template`. With `sync`, the file's bytes are pushed to disk
    before the rename. On any exception the temporary is removed and `path` is left untouched.
    """
    path = Path(path)
    tmp = Path(temporary) if temporary is not None else temporary_beside(path, template)
    try:
        yield tmp
        if sync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise


# A staging folder, and an old folder renamed aside while the new one takes its place.
FOLDER_STAGING_TEMPLATE = ".{name}.{token}.new-tmp"
FOLDER_RETIRED_TEMPLATE = ".{name}.{token}.old-tmp"


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty hidden staging folder beside `path` to fill; on a clean exit it becomes `path`.

    An existing folder at `path` is first renamed aside, then the staging folder renamed into
    place, then the old one deleted: readers see the old tree or the new one. (A kill between
    the two renames leaves no `path`, and the old tree under its `.old-tmp` name.) On any
    exception the staging folder is deleted and `path` is left untouched. Leftovers of killed
    writers are `temporaries_beside(path, FOLDER_STAGING_TEMPLATE)` and `..._RETIRED_TEMPLATE`.
    """
    path = Path(path)
    staging = temporary_beside(path, FOLDER_STAGING_TEMPLATE)
    staging.mkdir()
    try:
        yield staging
        if path.exists():
            retired = temporary_beside(path, FOLDER_RETIRED_TEMPLATE)
            os.replace(path, retired)
            os.replace(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    except BaseException:
        remove_path(staging)
        raise
