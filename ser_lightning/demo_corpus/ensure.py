"""Making sure a demo corpus is in place, generated once and renamed into place under a lock.

The corpus is generated into a hidden sibling folder and renamed into place under a file lock,
so a killed run never leaves a half corpus that looks complete and concurrent callers end with
one good copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from filelock import FileLock

from ser_lightning.demo_corpus.design import DEFAULT_SPEC, DemoCorpusSpec
from ser_lightning.demo_corpus.manifest import MANIFEST_NAME, is_complete, read_manifest
from ser_lightning.demo_corpus.writer import generate_demo_corpus
from ser_lightning.utils.files import (
    FOLDER_RETIRED_TEMPLATE,
    FOLDER_STAGING_TEMPLATE,
    atomic_folder,
    temporaries_beside,
)


def ensure_demo_corpus(root: str | Path, spec: DemoCorpusSpec = DEFAULT_SPEC, progress: bool = True) -> Path:
    """Generate the corpus at root if it is missing, or if its manifest differs from spec.

    Idempotent and cheap when the corpus is already there (files are left untouched). The new
    corpus is written into a hidden sibling folder and renamed into place under a sibling
    `<root>.lock` file lock, so a killed run never leaves a half corpus that looks complete and
    concurrent callers end with one good copy.

    Args:
        root: the corpus folder.
        spec: the corpus to have there (default: the RAVDESS-sized one).
        progress: whether to show a progress bar while generating.

    Returns:
        root.

    Raises:
        FileExistsError: root holds something other than a demo corpus.
    """
    regenerate_if_needed(Path(root), spec, progress)
    return Path(root)


def regenerate_if_needed(root: Path, spec: DemoCorpusSpec, progress: bool, force: bool = False) -> bool:
    """Do ensure_demo_corpus's work, also regenerating a complete corpus when forced.

    Args:
        root: the corpus folder.
        spec: the corpus to have there.
        progress: whether to show a progress bar while generating.
        force: regenerate even when an identical corpus is there.

    Returns:
        True when it (re)generated the corpus, False when it was already in place.

    Raises:
        FileExistsError: root holds something other than a demo corpus.
    """
    root = root.expanduser().absolute()
    root.parent.mkdir(parents=True, exist_ok=True)
    if not force and is_complete(root, spec):  # fast path, no lock needed to read
        return False
    with FileLock(str(root.with_name(root.name + ".lock"))):
        # Another process may have finished the corpus while this one waited for the lock.
        if not force and is_complete(root, spec):
            return False
        if root.exists() and (not root.is_dir() or (any(root.iterdir()) and read_manifest(root) is None)):
            raise FileExistsError(
                f"{str(root)!r} holds files that are not a demo corpus (no {MANIFEST_NAME}); "
                "refusing to replace them. Choose another root or remove the folder."
            )
        # Leftovers of runs that were killed mid-way: nobody else can be writing them now.
        for stale in _staging_leftovers(root):
            shutil.rmtree(stale, ignore_errors=True)
        with atomic_folder(root) as staging:
            generate_demo_corpus(staging, spec, progress=progress)
    return True


def _staging_leftovers(root: Path) -> list[Path]:
    """Hidden sibling folders a killed ensure_demo_corpus of this very root left behind.

    Matched exactly (`.<name>.<token>.new-tmp` / `.old-tmp`, token without dots) so that the
    staging folders of a neighbouring root such as `<name>.x` are never taken for ours.

    Returns:
        The leftover folders.
    """
    found = temporaries_beside(root, FOLDER_STAGING_TEMPLATE) + temporaries_beside(
        root, FOLDER_RETIRED_TEMPLATE
    )
    return [p for p in found if p.is_dir()]
