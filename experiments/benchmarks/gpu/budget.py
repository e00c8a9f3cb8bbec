"""The budget of the seed-recipe study: epochs, seeds and a time guard per job for the time left.

    python experiments/benchmarks/gpu/budget.py --seconds 240 --throughput throughput.json [--cores 16]

Estimates one epoch of each recipe from the measured throughput table (the recipe's model on
log-mel, scaled by the recipe's input size, batch size and offline copies, plus validation and
on-the-fly augmentation on the host's cores), then picks the most seeds (3, 2, 1) for which
the recipes' own epochs, or failing that a common cap of at least --min-epochs, fit into
--seconds with --overhead seconds per job (set-up, test, calibration, checkpoints). Each job
also gets a time guard (`trainer.max_time`): its share of the seconds less the overhead, so the
sweep ends in time even where the estimate is off; a job stopped by it is tested as usual.
EPOCHS and SEEDS in the environment fix those two instead.

Prints the reasoning on stderr and shell assignments (EPOCHS, SEEDS, MAX_TIME, JOBS) on stdout;
--json writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import yaml

CONF = Path(__file__).resolve().parents[3] / "conf"
LOGMEL_AREA = 1 * 64 * 94  # the input the throughput table measured
# recipe: (model of the throughput row that stands in for it, input C*F*T, batch, train clips
# per clean clip, augmented on the fly in the loader)
RECIPES = {
    "seed000_acnt": ("acnt", 1 * 40 * 174, 32, 1, True),
    "seed001_cnn_bilstm_mha": ("cnn_bilstm_mha", 1 * 68 * 862, 16, 3, False),
    "seed002_crnn_mfcc": ("crnn_attn_mfcc", 1 * 40 * 94, 32, 1, False),
    "seed003_crnn_logmel": ("crnn_attn", 1 * 128 * 300, 16, 1, False),
    "seed004_cnn2ch": ("acnt", 2 * 40 * 94, 32, 3, False),
}
AUGMENT_SECONDS_PER_CLIP = 0.010  # one Signalsmith stretcher pass on a 3 s clip (CPU benchmark)
VALIDATION_SHARE = 0.3  # validation clips per training clip (240 / 960 on the actor split) and logging


def own_epochs(recipe: str) -> int:
    return int(yaml.safe_load((CONF / "experiment" / f"{recipe}.yaml").read_text())["trainer"]["max_epochs"])


def epoch_estimates(rows: list[dict], cores: int) -> dict[str, float]:
    """Seconds per epoch of each recipe, from the fastest measured row of its stand-in model."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["model"] not in best or row["epoch_seconds"] < best[row["model"]]["epoch_seconds"]:
            best[row["model"]] = row
    fallback = min(rows, key=lambda r: -r["epoch_seconds"])  # the slowest row where a model is missing
    estimates = {}
    for recipe, (model, area, batch, copies, augmented) in RECIPES.items():
        row = best.get(model, fallback)
        scale = max(1.0, area / LOGMEL_AREA) ** 0.5 * (32 / batch) ** 0.5
        seconds = row["epoch_seconds"] * scale * (copies + VALIDATION_SHARE)
        if augmented:
            seconds += row.get("train_clips", 1000) * AUGMENT_SECONDS_PER_CLIP / max(1, cores - 1)
        estimates[recipe] = seconds
    return estimates


def plan(
    seconds: float, estimates: dict[str, float], overhead: float, min_epochs: int, fixed_epochs, fixed_seeds
):
    """(epochs cap or None for the recipes' own, number of seeds, estimated seconds)."""
    own = {r: own_epochs(r) for r in RECIPES}

    def cost(cap: int | None, seeds: int) -> float:
        per_seed = sum(2 * (min(cap or own[r], own[r]) * estimates[r] + overhead) for r in RECIPES)
        return seeds * per_seed

    for seeds in [fixed_seeds] if fixed_seeds else [3, 2, 1]:
        if fixed_epochs:
            return fixed_epochs, seeds, cost(fixed_epochs, seeds)
        if cost(None, seeds) <= seconds:
            return None, seeds, cost(None, seeds)
        cap = max(1, max(own.values()))
        while cap > 1 and cost(cap, seeds) > seconds:
            cap -= 1
        if cap >= min_epochs or seeds == 1 or fixed_seeds:
            return cap, seeds, cost(cap, seeds)
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, required=True, help="time left for the sweep")
    parser.add_argument(
        "--throughput", type=Path, nargs="+", required=True, help="training_throughput.py --json files"
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--overhead", type=float, default=8.0, help="seconds per job besides its epochs")
    parser.add_argument(
        "--min-epochs", type=int, default=20, help="fewer seeds rather than fewer epochs than this"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    rows = [row for path in args.throughput if path.exists() for row in json.loads(path.read_text())["rows"]]
    if not rows:
        sys.exit("no throughput rows: nothing to estimate from")
    fixed_epochs = int(os.environ["EPOCHS"]) if os.environ.get("EPOCHS") else None
    fixed_seeds = len(os.environ["SEEDS"].split(",")) if os.environ.get("SEEDS") else None
    estimates = epoch_estimates(rows, args.cores)
    epochs, seeds, estimated = plan(
        args.seconds, estimates, args.overhead, args.min_epochs, fixed_epochs, fixed_seeds
    )
    jobs = len(RECIPES) * 2 * seeds
    guard = max(5, math.floor(args.seconds / jobs - args.overhead))
    seed_list = os.environ.get("SEEDS") or ",".join(str(s) for s in range(1, seeds + 1))

    log = sys.stderr
    print(
        f"seed-recipe budget: {args.seconds:.0f} s for the sweep, {args.overhead:.0f} s overhead per job",
        file=log,
    )
    for recipe, seconds in estimates.items():
        print(
            f"  {recipe}: ~{seconds:.2f} s per epoch (estimated), own epochs {own_epochs(recipe)}", file=log
        )
    source = (
        "fixed by EPOCHS" if fixed_epochs else ("the recipes' own" if epochs is None else "reduced to fit")
    )
    print(
        f"  -> {jobs} jobs (5 recipes x 2 splits x seeds {seed_list}), epochs: "
        f"{'recipes own (50-300, early stopping on)' if epochs is None else f'at most {epochs}'} ({source}), "
        f"estimated {estimated:.0f} s; time guard trainer.max_time {guard} s per job",
        file=log,
    )
    budget = {
        "seconds": args.seconds,
        "overhead_per_job": args.overhead,
        "epoch_estimates": estimates,
        "own_epochs": {r: own_epochs(r) for r in RECIPES},
        "epochs": epochs,
        "epochs_source": source,
        "seeds": seed_list,
        "jobs": jobs,
        "estimated_seconds": estimated,
        "max_time_seconds": guard,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(budget, indent=2) + "\n")
    print(f"EPOCHS={epochs or ''}")
    print(f"SEEDS={seed_list}")
    print(f"MAX_TIME=00:00:{guard // 60:02d}:{guard % 60:02d}")
    print(f"JOBS={jobs}")


if __name__ == "__main__":
    main()
