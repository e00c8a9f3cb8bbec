"""The budget of the seed-recipe study: seeds, epochs and a time share per job for the time left.

    python experiments/benchmarks/gpu/budget.py --seconds 240 --throughput throughput.json [--cores 16]

Estimates one epoch of each recipe from the measured throughput table (the recipe's model on
log-mel, scaled by the recipe's input size, batch size and offline copies, plus validation and
on-the-fly augmentation on the host's cores), then asks whether the recipes' own epochs
(50-300, early stopping on) fit into --seconds with --overhead seconds per job (set-up, test,
calibration, checkpoints): with 3 seeds, else 2, else 1. Where even one seed does not fit,
each job keeps its recipe's epochs but stops after a time share (`trainer.max_time`), the
largest one for which the sweep fits: a recipe that needs less than the share trains all its
epochs and leaves its time to the others, an expensive one trains as many as the share allows;
a job stopped by it is tested as usual. The time share is
set in every case, as a guard against a wrong estimate. EPOCHS in the environment caps every
recipe at that many epochs instead, SEEDS fixes the seeds.

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
    seconds: float,
    estimates: dict[str, float],
    overhead: float,
    fixed_epochs,
    fixed_seeds,
):
    """(seeds, whether the epochs fit without the time share, estimated seconds, time share per
    job, expected epochs per recipe)."""
    own = {r: own_epochs(r) for r in RECIPES}
    cap = {r: min(fixed_epochs or own[r], own[r]) for r in RECIPES}
    per_seed = sum(2 * (cap[r] * estimates[r] + overhead) for r in RECIPES)
    if fixed_seeds:
        seeds = fixed_seeds
    else:
        seeds = next((n for n in (3, 2, 1) if n * per_seed <= seconds), 1)
    jobs = len(RECIPES) * 2 * seeds
    cost = {r: cap[r] * estimates[r] for r in RECIPES}  # seconds of one job's epochs

    def total(share: float) -> float:
        return sum(2 * seeds * (min(cost[r], share) + overhead) for r in RECIPES)

    if total(max(cost.values())) <= seconds:  # everything fits: the share is only a guard
        share = max(1.5 * max(cost.values()), seconds / jobs - overhead)
    else:  # the largest common share that fits: jobs that need less leave their time to the others
        low, high = 0.0, max(cost.values())
        for _ in range(50):
            low, high = (
                ((low + high) / 2, high) if total((low + high) / 2) <= seconds else (low, (low + high) / 2)
            )
        share = low
    share = max(5, math.floor(share))
    expected = {r: max(1, min(cap[r], math.floor(share / max(estimates[r], 1e-6)))) for r in RECIPES}
    estimated = total(share)
    return seeds, seeds * per_seed <= seconds, estimated, share, expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, required=True, help="time left for the sweep")
    parser.add_argument(
        "--throughput",
        type=Path,
        nargs="+",
        required=True,
        help="training_throughput.py --json files",
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--overhead", type=float, default=10.0, help="seconds per job besides its epochs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    rows = [row for path in args.throughput if path.exists() for row in json.loads(path.read_text())["rows"]]
    if not rows:
        sys.exit("no throughput rows: nothing to estimate from")
    fixed_epochs = int(os.environ["EPOCHS"]) if os.environ.get("EPOCHS") else None
    fixed_seeds = len(os.environ["SEEDS"].split(",")) if os.environ.get("SEEDS") else None
    estimates = epoch_estimates(rows, args.cores)
    seeds, fits, estimated, share, expected = plan(
        args.seconds, estimates, args.overhead, fixed_epochs, fixed_seeds
    )
    jobs = len(RECIPES) * 2 * seeds
    seed_list = os.environ.get("SEEDS") or ",".join(str(s) for s in range(1, seeds + 1))
    epochs_text = (
        f"at most {fixed_epochs} (EPOCHS)" if fixed_epochs else "the recipes' own (early stopping on)"
    )
    source = "they fit" if fits else "they do not fit: each job stops after its time share"

    log = sys.stderr
    print(
        f"seed-recipe budget: {args.seconds:.0f} s for the sweep, {args.overhead:.0f} s overhead per job",
        file=log,
    )
    for recipe, seconds in estimates.items():
        print(
            f"  {recipe}: ~{seconds:.2f} s per epoch (estimated), own epochs {own_epochs(recipe)}, "
            f"expected {expected[recipe]} epochs",
            file=log,
        )
    print(
        f"  -> {jobs} jobs (5 recipes x 2 splits x seeds {seed_list}), epochs {epochs_text}: {source}; "
        f"time share trainer.max_time {share} s per job; estimated {estimated:.0f} s",
        file=log,
    )
    budget = {
        "seconds": args.seconds,
        "overhead_per_job": args.overhead,
        "epoch_estimates": estimates,
        "own_epochs": {r: own_epochs(r) for r in RECIPES},
        "expected_epochs": expected,
        "epochs": fixed_epochs,
        "epochs_source": source,
        "seeds": seed_list,
        "jobs": jobs,
        "estimated_seconds": estimated,
        "max_time_seconds": share,
    }
    if args.json is not None:
        args.json.write_text(json.dumps(budget, indent=2) + "\n")
    print(f"EPOCHS={fixed_epochs or ''}")
    print(f"SEEDS={seed_list}")
    print(f"MAX_TIME=00:00:{share // 60:02d}:{share % 60:02d}")
    print(f"JOBS={jobs}")


if __name__ == "__main__":
    main()
