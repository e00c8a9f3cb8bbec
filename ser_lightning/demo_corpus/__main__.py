"""Command line: `python -m ser_lightning.demo_corpus --root data/demo` (what `make demo` runs)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ser_lightning.demo_corpus.design import MAX_ACTORS, DemoCorpusSpec
from ser_lightning.demo_corpus.ensure import regenerate_if_needed
from ser_lightning.labels import RAVDESS_EMOTION_CODES


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = DemoCorpusSpec()
    parser = argparse.ArgumentParser(
        prog="python -m ser_lightning.demo_corpus",
        description="Generate the synthetic RAVDESS-layout speech-emotion corpus (idempotent).",
    )
    parser.add_argument("--root", required=True, help="output folder, e.g. data/demo")
    parser.add_argument(
        "--actors",
        type=int,
        default=defaults.num_actors,
        help=f"even, 4..{MAX_ACTORS} (RAVDESS: 24)",
    )
    parser.add_argument("--duration", type=float, default=defaults.duration, help="mean seconds per clip")
    parser.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--force", action="store_true", help="regenerate even if an identical corpus exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus the command line describes, unless an identical one is there.

    Args:
        argv: the arguments (None: sys.argv).

    Returns:
        The exit status: 0, 1 when the folder holds something else, 2 for an impossible spec.
    """
    from rich.console import Console

    args = _parse_args(argv)
    console = Console()
    try:
        spec = DemoCorpusSpec(args.actors, args.duration, args.sample_rate, args.seed)
    except ValueError as err:
        console.print(f"[red]error:[/red] {err}")
        return 2
    root = Path(args.root)
    started = time.perf_counter()
    try:
        generated = regenerate_if_needed(root, spec, progress=True, force=args.force)
    except FileExistsError as err:
        console.print(f"[red]error:[/red] {err}")
        return 1
    seconds = time.perf_counter() - started
    files = sorted(root.glob("Actor_*/*.wav"))
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    emotions = {RAVDESS_EMOTION_CODES[f.name.split("-")[2]] for f in files}
    action = "generated" if generated else "already up to date"
    console.print(
        f"demo corpus {action} at [bold]{root}[/bold]: {len(files)} files, {spec.num_actors} actors, "
        f"{len(emotions)} emotions, {size_mb:.1f} MB, {spec.sample_rate} Hz, seed {spec.seed}, "
        f"{seconds:.1f} s",
        soft_wrap=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
