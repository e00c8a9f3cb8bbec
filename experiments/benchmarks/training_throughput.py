"""Training throughput per model on log-mel features: clips/s, s/epoch, share of step time waiting for data.

Composes the real configs (`model=<name> features=logmel data=demo`), warms the caches, then
times `--epochs` training epochs with a callback that splits each step into data wait (from
the end of one batch to the start of the next) and compute.

    python experiments/benchmarks/training_throughput.py [--models acnt,crnn_attn] [--actors 24]
    python experiments/benchmarks/training_throughput.py --accelerator gpu --precision bf16-mixed
    python experiments/benchmarks/training_throughput.py --accelerator gpu --precision bf16-mixed,32-true \
        --placement device --out throughput.md --json throughput.json   # both precisions, rows on the GPU
    python experiments/benchmarks/training_throughput.py --epochs 100 --models acnt   # full-run time
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from bench_config import timing_config


class StepTimer(pl.Callback):
    """Data wait = time between one batch's end and the next batch's start."""

    def __init__(self):
        self.data_wait = 0.0
        self.compute = 0.0
        self.clips = 0
        self._last_end = None
        self._start = None
        self.epoch_seconds: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self._last_end = self._epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._start = time.perf_counter()
        self.data_wait += self._start - self._last_end

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self._last_end = time.perf_counter()
        self.compute += self._last_end - self._start
        self.clips += len(batch["label"])

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)


def measure(model: str, precision: str, args, work: Path) -> dict:
    from ser_lightning.train import build

    overrides = [
        f"model={model}",
        "features=logmel",
        "data=demo",
        f"data.demo.num_actors={args.actors}",
        f"data.root={work / 'demo'}",
        f"paths.cache_dir={work / 'cache'}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={args.accelerator}",
        f"trainer.precision={precision}",
        f"data.num_workers={args.workers}",
        f"data.batch_size={args.batch_size}",
        f"data.pin_memory={str(args.accelerator == 'gpu').lower()}",
        f"data.placement={args.placement}",
        *args.extra,
    ]
    cfg = timing_config(overrides, work / "run")
    objects = build(cfg)
    timer = StepTimer()
    trainer = objects["trainer"]
    trainer.callbacks.append(timer)
    dm = objects["datamodule"]
    dm.prepare_data()
    dm.setup("fit")
    cuda = args.accelerator == "gpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.fit(objects["model"], datamodule=dm)
    total = time.perf_counter() - started
    # peak of the tensors allocated during the fit (device-held rows included), and what the
    # caching allocator reserved for them
    peak = (torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()) if cuda else None
    params = sum(p.numel() for p in objects["model"].model.net.parameters())
    steady = timer.epoch_seconds[1:] or timer.epoch_seconds
    return {
        "model": model,
        "precision": precision,
        "placement": args.placement,
        "params": params,
        "fit_seconds": total,
        "epoch_seconds": sum(steady) / len(steady),
        "clips_per_second": timer.clips / max(timer.compute + timer.data_wait, 1e-9),
        "data_wait_share": timer.data_wait / max(timer.compute + timer.data_wait, 1e-9),
        "input": str(objects["model"].model.input_shape),
        "input_size": math.prod(objects["model"].model.input_shape),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "train_clips": timer.clips // max(len(timer.epoch_seconds), 1),
        "peak_gpu_allocated_bytes": peak[0] if peak else None,
        "peak_gpu_reserved_bytes": peak[1] if peak else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="acnt")
    parser.add_argument("--actors", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true", help="one or several, comma-separated")
    parser.add_argument(
        "--placement",
        default="host",
        choices=["host", "device", "auto"],
        help="data.placement: batches from a DataLoader (host) or slices of rows held on the device",
    )
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("extra", nargs="*", help="further Hydra overrides")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ser_throughput_"))
    rows = [
        measure(model, precision, args, work)
        for precision in args.precision.split(",")
        for model in args.models.split(",")
    ]
    device = (
        torch.cuda.get_device_name(0)
        if args.accelerator == "gpu"
        else f"{platform.machine()} CPU, {os.cpu_count()} cores"
    )
    lines = [
        f"\n## Training throughput on log-mel ({args.actors * 60} clips, {device}, precision {args.precision}, "
        f"batch {args.batch_size}, {args.workers} workers, data.placement={args.placement})\n",
        f"| model | input | params | s/epoch | clips/s | data wait | fit (s) for {args.epochs} epochs "
        "| precision | peak GPU memory (allocated / reserved) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        memory = (
            f"{r['peak_gpu_allocated_bytes'] / 2**20:.0f} / {r['peak_gpu_reserved_bytes'] / 2**20:.0f} MiB"
            if r["peak_gpu_allocated_bytes"] is not None
            else "–"
        )
        lines.append(
            f"| {r['model']} | {r['input']} | {r['params'] / 1e6:.2f} M | {r['epoch_seconds']:.2f} | "
            f"{r['clips_per_second']:.0f} | {100 * r['data_wait_share']:.1f}% | {r['fit_seconds']:.1f} | "
            f"{r['precision']} | {memory} |"
        )
    report = "\n".join(lines)
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps({"device": device, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
