"""Generate the demo corpus and build the caches the timed runs read, each step timed.

    python experiments/benchmarks/gpu/prepare.py --work WORK [--actors 24] [--recipes] [--json prepare.json]

Corpus in WORK/data/demo, caches in WORK/cache: the places run.sh passes to every run as
`data.root` and `paths.cache_dir`. First the log-mel cache of `model=acnt features=logmel`
(waveforms decoded once, log-mel computed once: what the 100-epoch run and the throughput
table read), then with --recipes the caches of the five seed recipes for both splits (their own
sample rates, clip lengths and features, and the offline augmented copies of seed001 and
seed004 for the training clips of each split), so that the recipe study's time goes to
training. Prints one line per step and writes the seconds as
JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench_config

RECIPES = (
    "seed000_acnt",
    "seed001_cnn_bilstm_mha",
    "seed002_crnn_mfcc",
    "seed003_crnn_logmel",
    "seed004_cnn2ch",
)


def build_caches(overrides: list[str], work: Path) -> float:
    """Compose the train config with overrides, then scan, decode and compute features for the
    fit splits as a training run does at its start; the seconds it took."""
    from bench_config import timing_config

    from ser_lightning.train import build

    # the full config (the recipes set callbacks), only its data module is used
    cfg = timing_config([*overrides, "print_config=false"], work / "prepare_run", training_only=False)
    started = time.perf_counter()
    dm = build(cfg)["datamodule"]
    dm.prepare_data()
    dm.setup("fit")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--actors", type=int, default=24)
    parser.add_argument("--recipes", action="store_true", help="also the five seed recipes' caches")
    parser.add_argument("--seed", type=int, default=1, help="the split seed of the recipes' offline copies")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from ser_lightning.demo_corpus import DemoCorpusSpec, ensure_demo_corpus

    timings: dict[str, float] = {}
    started = time.perf_counter()
    root = ensure_demo_corpus(
        args.work / "data" / "demo", DemoCorpusSpec(num_actors=args.actors), progress=False
    )
    timings["corpus"] = time.perf_counter() - started
    clips = sum(1 for _ in Path(root).rglob("*.wav"))
    print(
        f"demo corpus: {clips} clips, {args.actors} actors, generated in {timings['corpus']:.1f} s",
        flush=True,
    )

    common = [
        "data=demo",
        f"data.demo.num_actors={args.actors}",
        f"data.root={args.work / 'data' / 'demo'}",
        f"paths.cache_dir={args.work / 'cache'}",
        "trainer=cpu",
    ]
    timings["logmel"] = build_caches(["model=acnt", "features=logmel", *common], args.work)
    print(f"caches of model=acnt features=logmel (decode + log-mel): {timings['logmel']:.1f} s", flush=True)
    if args.recipes:
        for recipe in RECIPES:
            # both splits: the offline copies are made for the training clips of each
            timings[recipe] = 0.0
            for split in ("actor", "random"):
                overrides = [f"experiment={recipe}", f"seed={args.seed}", f"data.split={split}", *common]
                timings[recipe] += build_caches(overrides, args.work)
            print(
                f"caches of experiment={recipe} (split actor and random): {timings[recipe]:.1f} s", flush=True
            )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"clips": clips, "actors": args.actors, "seconds": timings}, indent=2)
        )


if __name__ == "__main__":
    main()
