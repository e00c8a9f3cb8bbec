"""What a `model=ssl_finetune` training step costs: forward, backward and optimizer step of a
pretrained encoder with its head, with and without gradient checkpointing.

    python experiments/benchmarks/ssl_finetune_step.py                       # wavlm_base_plus, batch 4
    python experiments/benchmarks/ssl_finetune_step.py --encoders wav2vec2_base whisper_base --batch 8
    python experiments/benchmarks/ssl_finetune_step.py --tiny --steps 2      # tiny encoders: seconds

The network is `SSLFinetune` as `model=ssl_finetune` builds it (its convolutional front end
frozen, the encoder's time masking on, every hidden state mixed by the head), its encoder the
registry architecture with random weights loaded from a save_pretrained folder (speed does not
depend on the weights' values). Each step: `--batch` clips of `--duration` s of noise at 16 kHz,
cross-entropy, backward, AdamW with the two parameter groups the module gives it. The first step
is a warm-up and is not counted; the table gives the mean of the next `--steps`. On a GPU the
step runs under bf16 autocast, as `trainer=gpu` (precision=bf16-mixed) does, and the peak memory
is CUDA's; on the CPU in float32, and the peak is the resident memory of the process, one
process per row (so that no row inherits another's peak).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from ssl_features import encoder_folder

from ser_lightning.features.ssl.registry import ENCODERS, SAMPLE_RATE
from ser_lightning.models import SSLFinetune

NUM_CLASSES = 8


def step_seconds(net: SSLFinetune, args: argparse.Namespace, device: torch.device) -> list[float]:
    """Seconds of each training step after the first."""
    samples = int(args.duration * SAMPLE_RATE)
    generator = torch.Generator().manual_seed(0)
    waves = (0.1 * torch.randn(args.batch, 1, 1, samples, generator=generator)).to(device)
    target = torch.randint(0, NUM_CLASSES, (args.batch,), generator=generator).to(device)
    optimizer = torch.optim.AdamW(net.parameter_groups(1e-3), weight_decay=1e-4)
    net.train()
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    )
    measured = []
    for step in range(args.steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with autocast:
            loss = torch.nn.functional.cross_entropy(net(waves), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            measured.append(time.perf_counter() - started)
    return measured


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_one(args: argparse.Namespace, work: Path, device: torch.device) -> dict:
    """One encoder and checkpointing setting, in this process."""
    name, checkpointing = args.one, args.checkpointing == "on"
    folder = encoder_folder(name, work / "encoders", args.tiny)
    net = SSLFinetune(
        (1, 1, int(args.duration * SAMPLE_RATE)),
        NUM_CLASSES,
        str(folder),
        gradient_checkpointing=checkpointing,
    ).to(device)
    measured = step_seconds(net, args, device)
    return {
        "encoder": name,
        "checkpointing": checkpointing,
        "params": sum(p.numel() for p in net.parameters()),
        "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "seconds": statistics.mean(measured),
        "spread": (min(measured), max(measured)),
        "peak_mb": peak_memory_mb(device),
    }


def rows_of(args: argparse.Namespace, work: Path) -> list[dict]:
    """Every encoder with gradient checkpointing on and off, each in a process of its own."""
    rows = []
    for name in args.encoders:
        encoder_folder(name, work / "encoders", args.tiny)  # written once, read by both processes
        for checkpointing in ("on", "off"):
            command = [
                sys.executable,
                __file__,
                "--one",
                name,
                "--checkpointing",
                checkpointing,
                "--work-dir",
                str(work),
                "--batch",
                str(args.batch),
                "--duration",
                str(args.duration),
                "--steps",
                str(args.steps),
                *(["--tiny"] if args.tiny else []),
                *(["--threads", str(args.threads)] if args.threads else []),
            ]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"{name}, checkpointing {checkpointing} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(
                f"{name}, gradient checkpointing {checkpointing}: {rows[-1]['seconds']:.2f} s/step",
                file=sys.stderr,
                flush=True,
            )
    return rows


def table(rows: list[dict], args: argparse.Namespace, device: torch.device) -> str:
    peak = "peak CUDA memory, MiB" if device.type == "cuda" else "peak resident memory, MiB"
    lines = [
        f"| encoder | gradient checkpointing | parameters (trainable) | s / step | clips / s | {peak} |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        low, high = row["spread"]
        spread = f" ({low:.2f}–{high:.2f})" if high - low >= 0.005 else ""
        lines.append(
            f"| `{row['encoder']}` | {'on' if row['checkpointing'] else 'off'} | "
            f"{row['params']:,} ({row['trainable']:,}) | {row['seconds']:.2f}{spread} | "
            f"{args.batch / row['seconds']:.2f} | {row['peak_mb']:,.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="+", default=["wavlm_base_plus"], choices=sorted(ENCODERS))
    parser.add_argument("--batch", type=int, default=4, help="clips per step")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per clip")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    parser.add_argument("--tiny", action="store_true", help="2-layer, 32-wide encoders: a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--work-dir", default=None, help="encoder folders (default: a temporary folder)")
    parser.add_argument("--output", default=None, help="also write the report to this markdown file")
    # one row, in this process (what each of the report's processes runs)
    parser.add_argument("--one", default=None, choices=sorted(ENCODERS), help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", default="off", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1:
        parser.error("--steps and --batch must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.one:
        print(json.dumps(measure_one(args, Path(args.work_dir), device)))
        return 0
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ssl_finetune-") as scratch:
        work = Path(args.work_dir).resolve() if args.work_dir else Path(scratch)
        rows = rows_of(args, work)
    load_after = os.getloadavg()
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{torch.get_num_threads()} threads on {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()})"
    )
    sizes = "tiny (2 layers of 32 values)" if args.tiny else "the registry's sizes"
    text = (
        f"`model=ssl_finetune` training steps: encoders of {sizes}, random weights; batch {args.batch} × "
        f"{args.duration:g} s at {SAMPLE_RATE // 1000} kHz, {'bf16 autocast' if device.type == 'cuda' else 'float32'}, "
        f"mean of {args.steps} steps after a warm-up; torch {torch.__version__}, {where}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.\n\n{table(rows, args, device)}\n"
    )
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
