"""The manifest: the spec file a finished demo corpus carries, and the check it allows."""

from __future__ import annotations

import json
from pathlib import Path

from ser_lightning.demo_corpus.design import DemoCorpusSpec
from ser_lightning.demo_corpus.synthesis import GENERATOR_VERSION

MANIFEST_NAME = "demo_manifest.json"
# The generator's name, recorded in every manifest: its import name until the package moved
# out of data/ (now ser_lightning.demo_corpus). Changing it would mark every existing corpus out
# of date and regenerate it, so it stays.
_GENERATOR_NAME = "ser_lightning.data.demo"


def manifest_for(spec: DemoCorpusSpec) -> dict:
    """The manifest a corpus of this spec and generator version carries.

    Args:
        spec: the corpus's spec.

    Returns:
        The generator's name and version, the spec and the number of files.
    """
    return {
        "generator": _GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "spec": spec.to_dict(),
        "num_files": spec.num_files,
    }


def write_manifest(root: Path, spec: DemoCorpusSpec) -> None:
    """Write the manifest of a finished corpus (the last file a generation writes).

    Args:
        root: the corpus folder.
        spec: the corpus it holds.
    """
    (root / MANIFEST_NAME).write_text(json.dumps(manifest_for(spec), indent=2, sort_keys=True) + "\n")


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a demo corpus at root, or None when there is none (or it is unreadable).

    Args:
        root: the corpus folder.

    Returns:
        The manifest's content, or None.
    """
    path = Path(root) / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_complete(root: Path, spec: DemoCorpusSpec) -> bool:
    """True when root holds the corpus of exactly this spec and generator version.

    Args:
        root: the corpus folder.
        spec: the corpus it should hold.

    Returns:
        Whether its manifest is that of `spec` and every file is there.
    """
    manifest = read_manifest(root)
    if manifest != manifest_for(spec):
        return False
    # The manifest is written last, but a user may have deleted files since.
    return sum(1 for _ in root.glob("Actor_*/*.wav")) == spec.num_files
