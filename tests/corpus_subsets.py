"""Small subsets of a RAVDESS-layout corpus, for runs whose features are slow to compute."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_subset(source: Path, target: Path, actors: int = 6) -> Path:
    """Copy one clip per emotion (normal intensity, first statement and repetition) of the
    first `actors` actors: 8 files per actor, both genders, enough for the actor split."""
    for actor in range(1, actors + 1):
        for path in sorted((source / f"Actor_{actor:02d}").glob(f"03-01-??-01-01-01-{actor:02d}.wav")):
            destination = target / path.parent.name / path.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
    return target


def subset_overrides(root: Path, duration: float) -> list[str]:
    """Point the data config at a subset (a plain RAVDESS folder: nothing is generated there)."""
    return ["data=ravdess", f"data.root={root}", f"data.duration={duration}"]
