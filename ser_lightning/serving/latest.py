"""The best checkpoint of the latest training run: `python -m ser_lightning.serving.latest [RUNS]`.

`make serve` serves it. Runs are the folders `python -m ser_lightning.train` makes under
`outputs/train/runs/` (named by their start time, so the last name is the latest); a run's
best checkpoint is the one its summary.json names, or else its newest `checkpoints/best-*.ckpt`
(a run stopped before its summary was written). Prints the path; exits 1, saying so, when no
run has one.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_RUNS = Path("outputs/train/runs")


def best_checkpoint(run: Path) -> Path | None:
    """Find a run folder's best checkpoint.

    Args:
        run: a training run's folder.

    Returns:
        The checkpoint its summary.json names when that file exists, else its newest
        `checkpoints/best-*.ckpt`, else None.
    """
    try:
        named = json.loads((run / "summary.json").read_text()).get("best_checkpoint")
    except (OSError, ValueError, AttributeError):
        named = None
    if named and Path(named).is_file():
        return Path(named)
    found = sorted((run / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def latest_checkpoint(runs: Path = DEFAULT_RUNS) -> Path | None:
    """Find the best checkpoint of the latest run under `runs` that has one.

    Args:
        runs: the folder holding the run folders, named by start time.

    Returns:
        The checkpoint's path, or None when no run has one.
    """
    folders = sorted((p for p in runs.glob("*") if p.is_dir()), key=lambda p: p.name, reverse=True)
    for run in folders:
        found = best_checkpoint(run)
        if found is not None:
            return found
    return None


def main(argv: list[str] | None = None) -> int:
    """Print the latest run's best checkpoint (the command line's entry point).

    Args:
        argv: the arguments: an optional runs folder (default `outputs/train/runs`);
            `sys.argv[1:]` when None.

    Returns:
        The exit status: 0 when a checkpoint was printed, 1 when no run has one.
    """
    argv = sys.argv[1:] if argv is None else argv
    runs = Path(argv[0]) if argv else DEFAULT_RUNS
    found = latest_checkpoint(runs)
    if found is None:
        print(f"no run under {runs}/ has a best checkpoint (train one with `make train`)", file=sys.stderr)
        return 1
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
