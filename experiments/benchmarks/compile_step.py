"""What `model.compile=true` and `model.channels_last=true` cost and gain in a training step of
the convolutional networks on log-mel features.

    python experiments/benchmarks/compile_step.py                          # acnt, crnn_attn on this CPU
    python experiments/benchmarks/compile_step.py --models acnt --steps 5 --batch 8
    python experiments/benchmarks/compile_step.py --accelerator gpu --precision bf16-mixed
    python experiments/benchmarks/compile_step.py --accelerator gpu --precision bf16-mixed --compile-mode max-autotune

The module is SERModule as `model=<name> features=logmel` builds it (the real configs, the
clip length of `data.duration`), fed random features of the size the features config gives a
clip, so that only the network's step is timed: forward, loss, backward and the optimizer's
step, as training_step does them (`--precision bf16-mixed` runs them under bf16 autocast, as
`trainer.precision=bf16-mixed` does). Each configuration (compiled or not, channels-last or not)
runs in a process of its own with an empty inductor cache of its own, so that no row reuses
another's compiled code; the compiled configuration without channels-last is then run once more
on the cache its first process wrote, which is what a second run of the same model and shapes
pays (the first step's time in brackets).

Columns: the first step (for a compiled network, compiling the training graph is most of it),
the steady step (mean of `--steps` after two warm-up steps), the first step at the smaller
batch the end of an epoch gives (`--last-batch`: a compiled network compiles again, for a
batch dimension that may vary), and the first and steady evaluation forward (validation and
testing run the network in eval mode: another graph to compile).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SEED = 0


def build_module(args: argparse.Namespace, work: Path):
    """SERModule of `--one` from the composed train config, as train builds it."""
    from bench_config import timing_config, training_module

    compile_setting = args.compile_mode if args.compile == "on" else "false"
    cfg = timing_config(
        [
            f"model={args.one}",
            "features=logmel",
            f"data.duration={args.duration}",
            f"model.compile={compile_setting}",
            f"model.channels_last={'true' if args.channels_last == 'on' else 'false'}",
            *args.extra,
        ],
        work / "run",
    )
    return training_module(cfg)


def timed(device: torch.device, fn) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def prepare(args: argparse.Namespace, work: Path, device: torch.device):
    """The module of `args`, on `device`, and its training and evaluation steps."""
    torch.manual_seed(SEED)
    module = build_module(args, work)
    module.model.use_device(device)
    module.to(device)
    optimizer = module.configure_optimizers()["optimizer"]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.precision.startswith("bf16")
        else contextlib.nullcontext()
    )

    def batch(size: int) -> dict:
        generator = torch.Generator().manual_seed(size)
        return {
            "features": torch.randn(size, *module.model.input_shape, generator=generator).to(device),
            "label": torch.randint(0, len(module.model.labels), (size,), generator=generator).to(device),
        }

    def train_step(data: dict) -> None:
        module.train()
        with autocast:
            inputs = module.model.inputs(data)
            mixed = module.batch_augmentation(inputs, data["label"])
            loss = mixed.loss(module(mixed.features), module.loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def eval_step(data: dict) -> None:
        module.eval()
        with torch.inference_mode(), autocast:
            module(module.model.inputs(data))

    return module, batch, train_step, eval_step


# The variants measured in turn in one process: (compiled, channels-last).
IN_TURN = (("off", "off"), ("off", "on"), ("on", "off"))


def measure_in_turn(args: argparse.Namespace, work: Path) -> dict:
    """The network uncompiled in both layouts and compiled, in this process, their training
    steps taken in turn once each is warm, so that the load of a shared machine falls on all
    alike: the median seconds of each."""
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    steps = {}
    for compiled, layout in IN_TURN:
        args.compile, args.channels_last = compiled, layout
        module, batch, train_step, _ = prepare(args, work, device)
        data = batch(args.batch)
        for _ in range(3):
            train_step(data)
        steps[f"{compiled}-{layout}"] = (train_step, data, [])
    for _ in range(args.steps * 2):
        for train_step, data, times in steps.values():
            times.append(timed(device, lambda: train_step(data)))  # noqa: B023 (called at once)
    return {
        "model": args.one,
        "steps": args.steps * 2,
        **{name: statistics.median(times) for name, (_, _, times) in steps.items()},
    }


def measure_one(args: argparse.Namespace, work: Path) -> dict:
    """One model and setting, in this process."""
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    module, batch, train_step, eval_step = prepare(args, work, device)

    full, last = batch(args.batch), batch(args.last_batch)
    first = timed(device, lambda: train_step(full))
    for _ in range(2):
        train_step(full)
    steady = [timed(device, lambda: train_step(full)) for _ in range(args.steps)]
    last_first = timed(device, lambda: train_step(last))
    eval_first = timed(device, lambda: eval_step(full))
    eval_steady = [timed(device, lambda: eval_step(full)) for _ in range(args.steps)]
    return {
        "model": args.one,
        "compile": args.compile == "on",
        "channels_last": module.model._channels_last,
        "params": sum(p.numel() for p in module.model.net.parameters()),
        "input": list(module.model.input_shape),
        "first": first,
        "steady": statistics.mean(steady),
        "spread": [min(steady), max(steady)],
        "last_first": last_first,
        "eval_first": eval_first,
        "eval_steady": statistics.mean(eval_steady),
    }


def run_one(
    args: argparse.Namespace, model: str, compiled: str, channels_last: str, cache: Path, what: str = "--one"
) -> dict:
    command = [
        sys.executable,
        __file__,
        what,
        model,
        "--compile",
        compiled,
        "--channels-last",
        channels_last,
        "--compile-mode",
        args.compile_mode,
        "--batch",
        str(args.batch),
        "--last-batch",
        str(args.last_batch),
        "--duration",
        str(args.duration),
        "--steps",
        str(args.steps),
        "--accelerator",
        args.accelerator,
        "--precision",
        args.precision,
        "--work-dir",
        str(cache.parent),
        *(["--threads", str(args.threads)] if args.threads else []),
        *args.extra,
    ]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "TRITON_CACHE_DIR": str(cache / "triton")}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(
            f"{model} compile={compiled} channels_last={channels_last} failed:\n{done.stderr[-3000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def rows_of(args: argparse.Namespace, work: Path) -> list[dict]:
    rows = []
    for model in args.models.split(","):
        for compiled in ("off", "on"):
            for channels_last in ("off", "on"):
                cache = work / f"inductor-{model}-{compiled}-{channels_last}"
                row = run_one(args, model, compiled, channels_last, cache)
                if compiled == "on" and channels_last == "off":  # again, on the cache it wrote
                    row["warm_first"] = run_one(args, model, compiled, channels_last, cache)["first"]
                rows.append(row)
                print(
                    f"{model}, compile {compiled}, channels-last {channels_last}: first step "
                    f"{row['first']:.2f} s, steady {row['steady'] * 1e3:.0f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    return rows


def in_turn_rows(args: argparse.Namespace, work: Path) -> list[dict]:
    rows = []
    for model in args.models.split(","):
        rows.append(run_one(args, model, "off", "off", work / f"inductor-{model}-in-turn", "--in-turn"))
        r = rows[-1]
        print(
            f"{model}, in turn: {r['off-off'] * 1e3:.0f} ms eager, {r['off-on'] * 1e3:.0f} ms channels-last, "
            f"{r['on-off'] * 1e3:.0f} ms compiled",
            file=sys.stderr,
            flush=True,
        )
    return rows


def in_turn_table(rows: list[dict]) -> str:
    lines = [
        "| model | eager, ms | eager channels-last, ms (vs eager) | compiled, ms (vs eager) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        eager = r["off-off"]
        lines.append(
            f"| `{r['model']}` | {eager * 1e3:.0f} | {r['off-on'] * 1e3:.0f} ({eager / r['off-on']:.2f}×) | "
            f"{r['on-off'] * 1e3:.0f} ({eager / r['on-off']:.2f}×) |"
        )
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    lines = [
        "| model | compile | channels-last | first step, s (warm cache) | steady step, ms | vs eager | "
        "first smaller batch, s | first eval, s | steady eval, ms |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    baseline = {r["model"]: r["steady"] for r in rows if not r["compile"] and not r["channels_last"]}
    for r in rows:
        warm = f" ({r['warm_first']:.2f})" if "warm_first" in r else ""
        low, high = r["spread"]
        compiled = "on" if r["compile"] else "off"
        lines.append(
            f"| `{r['model']}` | {compiled} | {'on' if r['channels_last'] else 'off'} | "
            f"{r['first']:.2f}{warm} | {r['steady'] * 1e3:.0f} ({low * 1e3:.0f}–{high * 1e3:.0f}) | "
            f"{baseline[r['model']] / r['steady']:.2f}× | {r['last_first']:.2f} | {r['eval_first']:.2f} | "
            f"{r['eval_steady'] * 1e3:.1f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="acnt,crnn_attn", help="comma-separated model configs")
    parser.add_argument("--batch", type=int, default=32, help="clips per step")
    parser.add_argument("--last-batch", type=int, default=7, help="the smaller last batch of an epoch")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per clip (data.duration)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps after the first three")
    parser.add_argument("--accelerator", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--precision", default="32-true", choices=("32-true", "bf16-mixed"))
    parser.add_argument("--compile-mode", default="default", help="model.compile when compiled")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--work-dir", default=None, help="inductor caches (default: a temporary folder)")
    parser.add_argument("--output", default=None, help="also write the report to this markdown file")
    parser.add_argument("extra", nargs="*", help="further Hydra overrides")
    # one row, in this process (what each of the report's processes runs)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--in-turn", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--compile", default="off", choices=("on", "off"), help=argparse.SUPPRESS)
    parser.add_argument("--channels-last", default="off", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or not 1 <= args.last_batch:
        parser.error("--steps, --batch and --last-batch must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure_one(args, Path(args.work_dir))))
        return 0
    if args.in_turn:
        args.one = args.in_turn
        print(json.dumps(measure_in_turn(args, Path(args.work_dir))))
        return 0
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="compile_step-") as scratch:
        work = Path(args.work_dir).resolve() if args.work_dir else Path(scratch)
        rows = rows_of(args, work)
        in_turn = in_turn_rows(args, work)
    load_after = os.getloadavg()
    from bench_config import cpu_name

    where = (
        torch.cuda.get_device_name(0)
        if args.accelerator == "gpu"
        else f"{cpu_name()}, {args.threads or torch.get_num_threads()} threads on {os.cpu_count()} CPUs"
    )
    text = (
        f"Training steps of `features=logmel` networks: batch {args.batch} × {args.duration:g} s clips "
        f"(input {tuple(rows[0]['input'])}), {args.precision}, compile mode `{args.compile_mode}`, "
        f"mean of {args.steps} steps after three; torch {torch.__version__}, {where}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; {time.perf_counter() - started:.0f} s in all.\n\n"
        f"{table(rows)}\n\nSteady steps again, uncompiled in both layouts and compiled, in one process per "
        f"model, their steps taken in turn (so that a shared machine's load falls on all alike), median of "
        f"{in_turn[0]['steps']} steps each:\n\n{in_turn_table(in_turn)}\n"
    )
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
