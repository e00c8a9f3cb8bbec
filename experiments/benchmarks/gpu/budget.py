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
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench_config, beside the benchmarks
from bench_config import timing_config  # noqa: E402

RECIPE_NAMES = (
    "seed000_acnt",
    "seed001_cnn_bilstm_mha",
    "seed002_crnn_mfcc",
    "seed003_crnn_logmel",
    "seed004_cnn2ch",
)
# the throughput rows are of models on log-mel; cnn2ch takes no log-mel, acnt (a 2-D CNN) stands in
STAND_IN = {"cnn2ch": "acnt"}
AUGMENT_SECONDS_PER_CLIP = 0.010  # one Signalsmith stretcher pass on a 3 s clip (CPU benchmark)
VALIDATION_SHARE = 0.3  # validation clips per training clip (240 / 960 on the actor split) and logging


@dataclass(frozen=True)
class RecipeFacts:
    model: str  # the model config whose throughput row stands in for the recipe
    input_size: int  # C * F * T of one clip's features
    batch_size: int
    clips_per_clean_clip: int  # 1 + offline copies
    augmented_on_the_fly: bool
    max_epochs: int


def recipe_facts(recipe: str) -> RecipeFacts:
    """What the estimate needs of a recipe, read from its composed config (no second copy here)."""
    from ser_lightning.train import build

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = timing_config([f"experiment={recipe}", "logger=none"], run_dir, training_only=False)
        shape = build(cfg)["model"].model.input_shape
    model = str(cfg.hydra.runtime.choices["model"])
    augmentation = cfg.get("augmentation") or {}
    copies = int(augmentation.get("offline_copies", 0) or 0)
    return RecipeFacts(
        model=STAND_IN.get(model, model),
        input_size=math.prod(shape),
        batch_size=int(cfg.data.batch_size),
        clips_per_clean_clip=1 + copies,
        augmented_on_the_fly=bool(augmentation.get("waveform")) and copies == 0,
        max_epochs=int(cfg.trainer.max_epochs),
    )


def epoch_estimates(rows: list[dict], cores: int, facts: dict[str, RecipeFacts]) -> dict[str, float]:
    """Seconds per epoch of each recipe, from the fastest measured row of its stand-in model."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["model"] not in best or row["epoch_seconds"] < best[row["model"]]["epoch_seconds"]:
            best[row["model"]] = row
    fallback = min(rows, key=lambda r: -r["epoch_seconds"])  # the slowest row where a model is missing
    estimates = {}
    for recipe, fact in facts.items():
        row = best.get(fact.model, fallback)
        scale = (
            max(1.0, fact.input_size / row["input_size"]) ** 0.5
            * (row["batch_size"] / fact.batch_size) ** 0.5
        )
        seconds = row["epoch_seconds"] * scale * (fact.clips_per_clean_clip + VALIDATION_SHARE)
        if fact.augmented_on_the_fly:
            seconds += row.get("train_clips", 1000) * AUGMENT_SECONDS_PER_CLIP / max(1, cores - 1)
        estimates[recipe] = seconds
    return estimates


def plan(
    seconds: float,
    facts: dict[str, RecipeFacts],
    estimates: dict[str, float],
    overhead: float,
    fixed_epochs,
    fixed_seeds,
):
    """(seeds, whether the epochs fit without the time share, estimated seconds, time share per
    job, expected epochs per recipe)."""
    cap = {r: min(fixed_epochs or fact.max_epochs, fact.max_epochs) for r, fact in facts.items()}
    per_seed = sum(2 * (cap[r] * estimates[r] + overhead) for r in facts)
    if fixed_seeds:
        seeds = fixed_seeds
    else:
        seeds = next((n for n in (3, 2, 1) if n * per_seed <= seconds), 1)
    jobs = len(facts) * 2 * seeds
    cost = {r: cap[r] * estimates[r] for r in facts}  # seconds of one job's epochs

    def total(share: float) -> float:
        return sum(2 * seeds * (min(cost[r], share) + overhead) for r in facts)

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
    expected = {r: max(1, min(cap[r], math.floor(share / max(estimates[r], 1e-6)))) for r in facts}
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
    facts = {recipe: recipe_facts(recipe) for recipe in RECIPE_NAMES}
    estimates = epoch_estimates(rows, args.cores, facts)
    seeds, fits, estimated, share, expected = plan(
        args.seconds, facts, estimates, args.overhead, fixed_epochs, fixed_seeds
    )
    jobs = len(facts) * 2 * seeds
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
            f"  {recipe}: ~{seconds:.2f} s per epoch (estimated), own epochs {facts[recipe].max_epochs}, "
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
        "own_epochs": {r: fact.max_epochs for r, fact in facts.items()},
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
