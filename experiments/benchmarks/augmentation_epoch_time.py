"""Seconds per training epoch on the demo corpus with each augmentation preset.

    python experiments/benchmarks/augmentation_epoch_time.py                       # CPU, full demo corpus
    python experiments/benchmarks/augmentation_epoch_time.py --accelerator gpu     # trainer=gpu
    python experiments/benchmarks/augmentation_epoch_time.py --num-actors 8 --duration 1.5 --epochs 2

Each preset trains the default model (ACNT on log-mel) through the real configs
(`python -m ser_lightning.train augmentation=<preset>`), without validation, checkpoints or
loggers, for `--epochs` epochs; the first epoch (worker start-up, warm-up) is not counted
unless it is the only one. "Data wait" is the time the training loop spent waiting for the
next batch (DataLoader, waveform transforms in its workers, copy to the device); the rest
is the step itself (features on the device, SpecAugment, mixup, forward, backward,
optimiser). "waveform ms/clip" is the cost of the waveform transforms for one clip in one
process: with W workers they keep up while W / ms-per-clip exceeds the clips per second the
device trains on. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from bench_config import timing_config
from omegaconf import open_dict

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ser_lightning.train import build  # noqa: E402

warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


class EpochTimer(pl.Callback):
    """Wall time per training epoch and the part of it spent waiting for batches."""

    def __init__(self, synchronize: bool):
        self.synchronize = synchronize
        self.epochs: list[dict] = []
        self._mark = 0.0

    def _now(self) -> float:
        if self.synchronize:
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._mark = self._now()
        self.epochs.append({"start": self._mark, "wait": 0.0, "batches": 0})

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = self._now()
        self.epochs[-1]["wait"] += now - self._mark
        self.epochs[-1]["batches"] += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._mark = self._now()

    def on_train_epoch_end(self, trainer, pl_module):
        self.epochs[-1]["seconds"] = self._now() - self.epochs[-1]["start"]


def compose_run(preset: str, args: argparse.Namespace, run_dir: Path):
    overrides = [
        f"augmentation={preset}",
        f"trainer={'gpu' if args.accelerator == 'gpu' else 'cpu'}",
        f"trainer.max_epochs={args.epochs}",
        "trainer.min_epochs=1",
        f"data.batch_size={args.batch_size}",
        f"seed={args.seed}",
    ]
    if args.num_actors != 24 or args.duration != 3.0:
        overrides += [
            f"data.root=data/demo_{args.num_actors}actors_{args.duration:g}s",
            f"data.demo.num_actors={args.num_actors}",
            f"data.demo.duration={args.duration}",
            f"data.duration={args.duration}",
        ]
    if args.num_workers is not None:
        overrides.append(f"data.num_workers={args.num_workers}")
    if args.limit_train_batches is not None:
        overrides.append(f"++trainer.limit_train_batches={args.limit_train_batches}")
    cfg = timing_config(overrides, run_dir)
    with open_dict(cfg):
        cfg.paths.root_dir = str(REPO)
    return cfg


def waveform_ms_per_clip(datamodule, clips: int = 64) -> float | None:
    """Milliseconds the waveform transforms take per clip in one process (None when off)."""
    transform = datamodule.waveform_augmentation
    if transform is None:
        return None
    rows = datamodule.manifest.indices["train"][:clips]
    waves = [datamodule.arrays.waveforms[int(r)].copy() for r in rows]
    started = time.perf_counter()
    for wave in waves:
        transform(wave)
    return 1000 * (time.perf_counter() - started) / len(waves)


def measure(preset: str, args: argparse.Namespace) -> dict:
    run_dir = REPO / "outputs" / "benchmarks" / f"augmentation_{preset}"
    cfg = compose_run(preset, args, run_dir)
    pl.seed_everything(cfg.seed, workers=True)
    objects = build(cfg)
    datamodule, model, trainer = objects["datamodule"], objects["model"], objects["trainer"]
    datamodule.prepare_data()
    datamodule.setup("fit")  # caches (and offline copies) are built here, outside the timing
    per_clip_ms = waveform_ms_per_clip(datamodule)
    timer = EpochTimer(synchronize=args.accelerator == "gpu")
    trainer.callbacks.append(timer)
    trainer.fit(model, datamodule=datamodule)
    counted = timer.epochs[1:] or timer.epochs
    seconds = [e["seconds"] for e in counted]
    wait = sum(e["wait"] for e in counted) / sum(seconds)
    return {
        "preset": preset,
        "seconds": statistics.mean(seconds),
        "spread": (min(seconds), max(seconds)),
        "wait": wait,
        "batches": counted[0]["batches"],
        "clips": len(datamodule.dataset("train")),
        "workers": datamodule.num_workers,
        "train_input": datamodule.train_input,
        "per_clip_ms": per_clip_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["none", "specaugment", "waveform", "full"])
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per preset; the first is not counted")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--num-workers", type=int, default=None, help="override data.num_workers for every preset"
    )
    parser.add_argument(
        "--num-actors", type=int, default=24, help="demo corpus actors (24: the full demo corpus)"
    )
    parser.add_argument("--duration", type=float, default=3.0, help="demo clip seconds")
    parser.add_argument("--limit-train-batches", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads of the training process (default: torch's choice); 1 avoids "
        "spin-waiting threads when other processes load the CPU",
    )
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    device = torch.cuda.get_device_name(0) if args.accelerator == "gpu" else platform.processor() or "cpu"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"device: {device}; {os.cpu_count()} CPU cores; load average at start {load:.1f}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads"
    )
    results = [measure(preset, args) for preset in args.presets]
    print()
    counted = f"mean of epochs 2-{args.epochs}" if args.epochs > 1 else "epoch 1 (includes worker start-up)"
    print(
        f"Seconds per training epoch, demo corpus ({args.num_actors} actors, {args.duration:g} s clips), "
        f"ACNT on log-mel, batch {args.batch_size}, {args.accelerator}; {counted}"
    )
    print()
    print(
        "| augmentation | train input | DataLoader workers | train clips | batches | s/epoch | min-max "
        "| data wait | waveform ms/clip (1 process) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in results:
        per_clip = "-" if r["per_clip_ms"] is None else f"{r['per_clip_ms']:.1f}"
        print(
            f"| {r['preset']} | {r['train_input']} | {r['workers']} | {r['clips']} | {r['batches']} | "
            f"{r['seconds']:.2f} | {r['spread'][0]:.2f}-{r['spread'][1]:.2f} | {100 * r['wait']:.0f} % "
            f"| {per_clip} |"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    busy = load > (os.cpu_count() or 1)
    print(
        f"\nload average at end {load:.1f}"
        + (
            " (above the core count: other processes shared the CPU)"
            if busy
            else f" on {os.cpu_count()} cores"
        )
    )


if __name__ == "__main__":
    main()
