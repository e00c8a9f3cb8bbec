"""Parameters and seconds per training epoch of every model × features pair, on CPU.

    python experiments/benchmarks/model_epoch_time.py                 # the 24-actor demo corpus (1440 clips)
    python experiments/benchmarks/model_epoch_time.py --actors 4 --epochs 2 --models acnt cnn2ch

Each pair uses the default configs of its model and features groups (data=demo: 16 kHz, 3 s
clips, batch 32, speaker-independent split) and trains on the train split (70 %). Caches are
built before timing, the first epoch is a warm-up, and the table reports the mean of the
epochs after it (training only: no validation, checkpointing or progress bar). Pairs that
cannot work are listed with the start-up error's reason. Timings are only as quiet as the
machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from bench_config import timing_config

from ser_lightning.models import IncompatibleFeaturesError
from ser_lightning.train import build
from ser_lightning.utils.jobs import StartupError

MODELS = ["acnt", "cnn_bilstm_mha", "crnn_attn", "crnn_attn_mfcc", "cnn2ch"]
FEATURES = ["logmel", "mfcc", "mfcc_mel", "handcrafted68"]
FULL_DEMO_ACTORS = 24


class EpochTimer(pl.Callback):
    """Wall-clock seconds of every training epoch."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def train_epoch_seconds(module, datamodule, epochs: int, run_dir: str | Path) -> list[float]:
    """Seconds of each training epoch after the first (which warms allocators and the page
    cache), on the CPU, with nothing but training in the loop."""
    timer = EpochTimer()
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
        default_root_dir=run_dir,
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds[1:]


def incompatibility(error: BaseException | None) -> IncompatibleFeaturesError | None:
    """The model × features mismatch behind a start-up error, if that is what it was."""
    while error is not None and not isinstance(error, IncompatibleFeaturesError):
        error = error.__cause__
    return error


def compose_pair(model: str, features: str, args: argparse.Namespace, run_dir: str):
    root = Path(args.data_dir) / ("demo" if args.actors == FULL_DEMO_ACTORS else f"demo_{args.actors}actors")
    overrides = [
        "data=demo",
        f"data.root={root.resolve()}",
        f"data.demo.num_actors={args.actors}",
        f"model={model}",
        f"features={features}",
        f"paths.cache_dir={Path(args.cache_dir).resolve()}",
        *args.overrides,
    ]
    return timing_config(overrides, run_dir)


def time_pair(model: str, features: str, args: argparse.Namespace, run_dir: str) -> dict:
    cfg = compose_pair(model, features, args, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        objects = build(cfg)
    except StartupError as error:
        cause = incompatibility(error)
        if cause is None:
            raise
        reason = str(cause).split(": ", 1)[1].split(", but")[0]  # e.g. "it needs 2 input channels"
        return {"model": model, "features": features, "error": reason}
    datamodule, module = objects["datamodule"], objects["model"]
    datamodule.prepare_data()  # caches are built here, before any timing
    datamodule.setup("fit")
    measured = train_epoch_seconds(module, datamodule, args.epochs, run_dir)
    return {
        "model": model,
        "features": features,
        "input": tuple(module.model.input_shape),
        "params": sum(p.numel() for p in module.model.net.parameters()),
        "train_clips": len(datamodule.manifest.indices["train"]),
        "seconds": statistics.mean(measured),
        "spread": (min(measured), max(measured)),
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | features | input (C, F, T) | parameters | s / epoch (CPU) |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| `{row['model']}` | `{row['features']}` | does not fit: {row['error']} | — | — |")
        else:
            low, high = row["spread"]
            spread = f" ({low:.1f}–{high:.1f})" if high - low >= 0.05 else ""
            lines.append(
                f"| `{row['model']}` | `{row['features']}` | {row['input']} | {row['params']:,} | "
                f"{row['seconds']:.1f}{spread} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--actors", type=int, default=FULL_DEMO_ACTORS, help="demo corpus actors (even, 6..24; 60 clips each)"
    )
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per pair; the first is not counted (>= 2)"
    )
    parser.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    parser.add_argument("--features", nargs="+", default=FEATURES, choices=FEATURES)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--data-dir", default="data", help="where the demo corpora live")
    parser.add_argument("--cache-dir", default=".cache/ser_lightning", help="the shared feature caches")
    parser.add_argument("--output", default=None, help="also write the table to this markdown file")
    parser.add_argument(
        "overrides", nargs="*", help="extra Hydra overrides for every pair, e.g. data.batch_size=16"
    )
    args = parser.parse_args(argv)
    if args.actors % 2 or not 6 <= args.actors <= FULL_DEMO_ACTORS:
        parser.error(
            "--actors must be even and in 6..24: the speaker-independent split needs 3 actors per gender"
        )
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is a warm-up and is not counted")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # keep the table readable
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="model_epoch_time-") as run_dir:
        for features in args.features:
            for model in args.models:
                row = time_pair(model, features, args, run_dir)
                rows.append(row)
                print(
                    f"{model} × {features}: "
                    + (row["error"] if "error" in row else f"{row['seconds']:.2f} s/epoch"),
                    file=sys.stderr,
                    flush=True,
                )
    load_after = os.getloadavg()
    clips = next((row["train_clips"] for row in rows if "train_clips" in row), 0)
    header = (
        f"Demo corpus, {args.actors} actors ({60 * args.actors} clips; {clips} in the train split), "
        f"epochs {args.epochs} (first not counted), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads on {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after."
    )
    table = f"{header}\n\n{markdown(rows)}\n"
    print(table)
    if args.output:
        Path(args.output).write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
