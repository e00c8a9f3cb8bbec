"""What PyTorch Lightning costs per training step: SERModule fitted by a real Trainer against a
bare PyTorch loop on the same network, batches, optimizer and threads, timed in turn.

    python experiments/benchmarks/framework_overhead.py                 # acnt, crnn_attn, cnn_bilstm_mha
    python experiments/benchmarks/framework_overhead.py --models acnt --steps 40 --rounds 3 \
        --profile --out experiments/benchmarks/results/framework_overhead.md
    python experiments/benchmarks/framework_overhead.py --models acnt --steps 3 --rounds 1 \
        model.net.cnn_channels=[4,8] model.net.num_layers=1           # further Hydra overrides

Both sides train the one SERModel that `model=<name> features=logmel` builds from the real
configs (the clip length of `data.duration`, the batch of `data.batch_size`), on the same
DataLoader over precomputed random log-mel batches in memory (features of the module's input
shape, labels of its classes), so that no feature extraction and no disk are timed on either
side; both normalise the features as the features config says (`features.normalize`).

- **Lightning**: `pytorch_lightning.Trainer` as `trainer=cpu` configures it (32-true), with the
  project's CSV logger (`--logger none`: none), no validation, checkpoints, progress bar or model
  summary, fitting `SERModule` for one epoch of `--warmup + --steps + 1` batches: its
  `training_step` (batch augmentation, which is off by default, the loss with the configured
  label smoothing, the finiteness check, the train metrics' update and `self.log`), its hooks and
  the optimizer of its `configure_optimizers` (the learning-rate scheduler is left out: it steps
  once an epoch and watches a validation metric). A callback notes the time at each
  `on_train_batch_start` and `on_train_batch_end`.
- **bare**: `model.train(); for batch in loader: optimizer.zero_grad(); loss =
  cross_entropy(model(normalize(features)), label, label_smoothing); loss.backward();
  optimizer.step()`, with an optimizer built from the same `model.optimizer` config.

Two times per step, both over the same steps (the first `--warmup` of each run left out):
*step*, from the batch in hand to the end of the optimizer step (Lightning: from its callback's
`on_train_batch_start` to its `on_train_batch_end`), and *batch to batch*, from one batch's start
to the next one's, which adds fetching the next batch and everything the loop does between
batches (Lightning's logger connector, progress counters, its other hooks). The ratio is
Lightning's median over the bare loop's median; the headline is batch to batch, what a run pays
per step. `--rounds` rounds alternate the two sides (Lightning first in even rounds, bare
first in odd ones), with a fresh Trainer and optimizer each round, so that the load of a shared
machine falls on both alike; the per-round ratios give the noise.

`--profile` adds, per model, a cProfile of one more Lightning fit and one more bare loop of the
same length: the cumulative milliseconds per step of named parts (the network's forward, the
loss, backward, the optimizer's step and zero_grad, the metrics' update, `self.log`, Lightning's
hooks and loops), the attribution behind a ratio. cProfile slows Python code, Lightning's more
than the network's, so its milliseconds say where the time goes, not what it is unprofiled.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from bench_config import TRAINING_ONLY, cpu_name, timing_config, training_module
from hydra.utils import instantiate
from torch.utils.data import DataLoader, Dataset

SEED = 0
# Above this ratio (Lightning / bare, batch to batch) the framework's cost is looked into.
TARGET_RATIO = 1.10


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` quantile of `values`, linearly interpolated."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ---------------------------------------------------------------------------- what is trained
class FeatureBatches(Dataset):
    """Precomputed features and labels in memory, items as the data module gives them."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"features": self.features[index], "label": self.labels[index]}


def timing_overrides(model: str, logger: str, extra: list[str]) -> list[str]:
    """The training-only overrides of bench_config with `logger=<logger>`, the model on log-mel
    features, and `extra`."""
    training_only = [o for o in TRAINING_ONLY if not o.startswith("logger=")]
    return [*training_only, f"logger={logger}", f"model={model}", "features=logmel", *extra]


def build_module(cfg):
    """SERModule from the composed train config, as train builds it (8 emotions)."""
    torch.manual_seed(SEED)
    return training_module(cfg)


def feature_loader(module, batch_size: int, batches: int) -> DataLoader:
    """`batches` batches of random features of the module's input shape, in memory, in order."""
    generator = torch.Generator().manual_seed(SEED)
    clips = batch_size * batches
    features = torch.randn(clips, *module.model.input_shape, generator=generator)
    labels = torch.randint(0, len(module.model.labels), (clips,), generator=generator)
    return DataLoader(FeatureBatches(features, labels), batch_size=batch_size, shuffle=False, num_workers=0)


# ---------------------------------------------------------------------------- timing
@dataclass
class RunTimes:
    """The times of one run (one side, one round), in seconds."""

    step: list[float]  # batch in hand → optimizer step done, per timed step
    batch_to_batch: list[float]  # one batch's start → the next one's, per timed step
    wall: float  # the whole run: Trainer.fit, or the bare loop with its optimizer's creation
    threads: int  # torch's intra-op threads during the run


def run_times(starts: list[float], ends: list[float], wall: float, threads: int, warmup: int) -> RunTimes:
    """The timed steps of a run of len(starts) batches: the first `warmup` left out, and the last,
    which has no next batch to measure its batch-to-batch time to."""
    step = [end - start for start, end in zip(starts, ends, strict=True)][warmup:-1]
    batch_to_batch = [later - start for start, later in zip(starts, starts[1:], strict=False)][warmup:]
    return RunTimes(step, batch_to_batch, wall, threads)


class StepTimer(pl.Callback):
    """Notes the time at each training batch's start and end, and torch's thread count."""

    def __init__(self):
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.threads = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.starts.append(time.perf_counter())
        self.threads = torch.get_num_threads()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())


def lightning_fit(
    module, loader: DataLoader, cfg, run_dir: Path
) -> tuple[list[float], list[float], float, int]:
    """Fit `module` with a Trainer of the composed config for one epoch of `loader`.

    Returns:
        The batch start and end times, the fit's wall time and torch's thread count in it.
    """
    timer = StepTimer()
    loggers = [instantiate(node, save_dir=str(run_dir)) for node in (cfg.get("logger") or {}).values()]
    trainer = instantiate(
        cfg.trainer,
        default_root_dir=str(run_dir),
        max_epochs=1,
        max_steps=len(loader),
        callbacks=[timer],
        logger=loggers or False,
    )
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    wall = time.perf_counter() - started
    return timer.starts, timer.ends, wall, timer.threads


def bare_loop(module, loader: DataLoader) -> tuple[list[float], list[float], float, int]:
    """Train the module's SERModel with a plain PyTorch loop over `loader`: the same
    normalisation, network, loss and optimizer config, no Lightning.

    Returns:
        The batch start and end times, the loop's wall time and torch's thread count in it.
    """
    model = module.model
    optimizer_config = dict(module.hparams.optimizer)
    label_smoothing = float(module.hparams.label_smoothing)
    starts, ends = [], []
    started = time.perf_counter()
    optimizer = instantiate(optimizer_config)(params=model.parameters())
    model.train()
    for batch in loader:
        starts.append(time.perf_counter())
        optimizer.zero_grad()
        logits = model(model.features.normalize(batch["features"]))
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=label_smoothing)
        loss.backward()
        optimizer.step()
        ends.append(time.perf_counter())
    return starts, ends, time.perf_counter() - started, torch.get_num_threads()


SIDES = ("lightning", "bare")


def measure(model_name: str, args: argparse.Namespace, work: Path) -> dict:
    """Both sides of one model, `args.rounds` rounds in turn; per-side and per-round statistics."""
    cfg = timing_config(timing_overrides(model_name, args.logger, args.extra), work / model_name)
    batch_size = args.batch or int(cfg.data.batch_size)
    module = build_module(cfg)
    batches = args.warmup + args.steps + 1
    loader = feature_loader(module, batch_size, batches)
    runs: dict[str, list[RunTimes]] = {side: [] for side in SIDES}
    for round_index in range(args.rounds):
        order = SIDES if round_index % 2 == 0 else SIDES[::-1]
        for side in order:
            torch.manual_seed(SEED + round_index)
            if side == "lightning":
                raw = lightning_fit(module, loader, cfg, work / model_name / f"round{round_index}")
            else:
                raw = bare_loop(module, loader)
            runs[side].append(run_times(*raw, warmup=args.warmup))
            latest = runs[side][-1]
            print(
                f"  {model_name} round {round_index + 1}/{args.rounds} {side:>9}: "
                f"step {statistics.median(latest.step) * 1e3:7.1f} ms, "
                f"batch to batch {statistics.median(latest.batch_to_batch) * 1e3:7.1f} ms "
                f"(median of {len(latest.step)}), load {os.getloadavg()[0]:.2f}",
                file=sys.stderr,
                flush=True,
            )
    row = summarise(model_name, module, batch_size, runs)
    if args.profile:
        row["profile"] = profile(module, loader, cfg, work / model_name / "profile", args.warmup)
    return row


def summarise(model_name: str, module, batch_size: int, runs: dict[str, list[RunTimes]]) -> dict:
    """Median, p90 and per-round medians of each side and time, and the Lightning / bare ratios."""
    sides = {}
    for side, side_runs in runs.items():
        sides[side] = {
            "wall_s": [run.wall for run in side_runs],
            "threads": sorted({run.threads for run in side_runs}),
        }
        for what in ("step", "batch_to_batch"):
            pooled = [value for run in side_runs for value in getattr(run, what)]
            sides[side][what] = {
                "median_ms": statistics.median(pooled) * 1e3,
                "p90_ms": percentile(pooled, 0.9) * 1e3,
                "round_medians_ms": [statistics.median(getattr(run, what)) * 1e3 for run in side_runs],
                "samples_ms": [value * 1e3 for value in pooled],
            }
    ratios = {}
    for what in ("step", "batch_to_batch"):
        lightning, bare = sides["lightning"][what], sides["bare"][what]
        ratios[what] = {
            "ratio": lightning["median_ms"] / bare["median_ms"],
            "round_ratios": [
                fw / plain
                for fw, plain in zip(lightning["round_medians_ms"], bare["round_medians_ms"], strict=True)
            ],
        }
    return {
        "model": model_name,
        "input": list(module.model.input_shape),
        "params": sum(p.numel() for p in module.model.parameters()),
        "batch": batch_size,
        "sides": sides,
        "ratios": ratios,
    }


# ---------------------------------------------------------------------------- attribution
# (label, path fragment of the function's file, function name): cumulative time of each call.
PROFILE_PARTS = (
    ("network forward (SERModel)", "ser_lightning/model.py", "forward"),
    ("cross-entropy loss", "torch/nn/functional.py", "cross_entropy"),
    ("backward", "torch/_tensor.py", "backward"),
    ("optimizer step (torch)", "torch/optim/adamw.py", "step"),
    ("optimizer step (torch)", "torch/optim/adam.py", "step"),
    ("optimizer zero_grad", "torch/optim/optimizer.py", "zero_grad"),
    ("training_step (whole)", "ser_lightning/module.py", "training_step"),
    ("train metrics update", "torchmetrics/collections.py", "update"),
    ("train loss MeanMetric", "torchmetrics/metric.py", "forward"),
    ("self.log / log_dict", "pytorch_lightning/core/module.py", "log"),
    ("self.log / log_dict", "pytorch_lightning/core/module.py", "log_dict"),
    ("finiteness check", "torch/_tensor.py", "__bool__"),
    ("Lightning optimizer step (closure, wrappers)", "pytorch_lightning/core/optimizer.py", "step"),
    ("Lightning callback hooks", "pytorch_lightning/trainer/call.py", "_call_callback_hooks"),
    ("Lightning module hooks", "pytorch_lightning/trainer/call.py", "_call_lightning_module_hook"),
    ("logger connector (per batch)", "logger_connector/logger_connector.py", "on_batch_end"),
    ("logger connector (per batch)", "logger_connector/logger_connector.py", "update_train_step_metrics"),
    ("fetching the batch", "pytorch_lightning/loops/fetchers.py", "__next__"),
    ("fetching the batch", "torch/utils/data/dataloader.py", "__next__"),
    ("training epoch loop, per batch", "pytorch_lightning/loops/training_epoch_loop.py", "advance"),
)


# (label, package folder): the time spent in the Python code of the package's own files (cProfile's
# tottime: the torch operations they call are not counted), a floor of that package's cost.
PROFILE_SELF_TIME = (
    ("Python self time: pytorch_lightning, lightning_fabric", ("/pytorch_lightning/", "/lightning_fabric/")),
    ("Python self time: torchmetrics", ("/torchmetrics/",)),
)


def profiled_parts(profiler: cProfile.Profile, steps: int) -> dict[str, float]:
    """Milliseconds per step of each PROFILE_PARTS entry found in the profile (cumulative) and of
    each PROFILE_SELF_TIME package (own time)."""
    stats = pstats.Stats(profiler)
    parts: dict[str, float] = {}
    for (filename, _, function), (_, _, own, cumulative, _) in stats.stats.items():
        path = filename.replace(os.sep, "/")
        for label, fragment, name in PROFILE_PARTS:
            if function == name and path.endswith(fragment):
                parts[label] = parts.get(label, 0.0) + cumulative * 1e3 / steps
        for label, folders in PROFILE_SELF_TIME:
            if any(folder in path for folder in folders):
                parts[label] = parts.get(label, 0.0) + own * 1e3 / steps
    return parts


def profile(module, loader: DataLoader, cfg, run_dir: Path, warmup: int) -> dict:
    """cProfile one more Lightning fit and one more bare loop: milliseconds per step by part."""
    result = {}
    for side in SIDES:
        profiler = cProfile.Profile()
        torch.manual_seed(SEED)
        profiler.enable()
        if side == "lightning":
            starts, _, wall, _ = lightning_fit(module, loader, cfg, run_dir)
        else:
            starts, _, wall, _ = bare_loop(module, loader)
        profiler.disable()
        batches = len(starts)
        result[side] = {
            "batches": batches,
            "wall_ms_per_batch": wall * 1e3 / batches,
            "parts_ms_per_batch": profiled_parts(profiler, batches),
        }
    return result


# ---------------------------------------------------------------------------- report
def range_text(values: list[float], digits: int = 2) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def report(rows: list[dict], args: argparse.Namespace, load: tuple[tuple, tuple]) -> str:
    """The markdown report: the machine, the ratio table, the times, and the attribution."""
    threads = sorted({t for row in rows for side in row["sides"].values() for t in side["threads"]})
    lines = [
        "# The framework's cost: a Lightning training step against a bare PyTorch loop",
        "",
        f"`experiments/benchmarks/framework_overhead.py --models {','.join(args.models)} --steps {args.steps} "
        f"--rounds {args.rounds} --warmup {args.warmup}"
        + (" --profile" if args.profile else "")
        + (f" {' '.join(args.extra)}" if args.extra else "")
        + "`",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, Lightning {pl.__version__}, "
        f"{'/'.join(map(str, threads))} intra-op threads on both sides; logger `{args.logger}`; "
        f"load average {load[0][0]:.2f} / {load[0][1]:.2f} / {load[0][2]:.2f} before, "
        f"{load[1][0]:.2f} / {load[1][1]:.2f} / {load[1][2]:.2f} after (1 / 5 / 15 min).",
        "",
        "Precomputed log-mel batches in memory on both sides (no feature extraction timed); "
        f"{args.steps} timed steps per side and round after {args.warmup} warm-up steps, "
        f"{args.rounds} rounds alternating which side goes first. Ratio: Lightning's median over "
        "the bare loop's; the range: the ratios of the rounds' medians (the noise).",
        "",
        "| model | input | params | batch | bare, ms/step (p90) | Lightning, ms/step (p90) | ratio "
        "| rounds | step only: bare, ms | step only: Lightning, ms | step-only ratio | within 1.10× |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        bare, lightning = row["sides"]["bare"], row["sides"]["lightning"]
        ratio = row["ratios"]["batch_to_batch"]
        step_ratio = row["ratios"]["step"]
        lines.append(
            f"| `{row['model']}` | {tuple(row['input'])} | {row['params'] / 1e6:.2f} M | {row['batch']} "
            f"| {bare['batch_to_batch']['median_ms']:.1f} ({bare['batch_to_batch']['p90_ms']:.1f}) "
            f"| {lightning['batch_to_batch']['median_ms']:.1f} ({lightning['batch_to_batch']['p90_ms']:.1f}) "
            f"| {ratio['ratio']:.3f}× | {range_text(ratio['round_ratios'])} "
            f"| {bare['step']['median_ms']:.1f} | {lightning['step']['median_ms']:.1f} "
            f"| {step_ratio['ratio']:.3f}× | {'yes' if ratio['ratio'] <= TARGET_RATIO else '**no**'} |"
        )
    lines += [
        "",
        "ms/step: batch to batch (what a run pays per step: the step, fetching the next batch, the "
        "loop's bookkeeping); step only: the batch in hand to the optimizer's step done.",
        "",
        "Whole runs (each side's wall time per round, seconds, for "
        f"{args.warmup + args.steps + 1} batches; Lightning's includes the Trainer's setup, "
        "the epoch's end with the metrics' compute, and teardown):",
        "",
        "| model | bare, s | Lightning fit, s |",
        "| --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| `{row['model']}` | {', '.join(f'{s:.2f}' for s in row['sides']['bare']['wall_s'])} "
            f"| {', '.join(f'{s:.2f}' for s in row['sides']['lightning']['wall_s'])} |"
        )
    profiled = [row for row in rows if "profile" in row]
    if profiled:
        lines += [
            "",
            "## Where the time goes (cProfile, ms per batch, cumulative; one more run of each side)",
            "",
            "Nested parts overlap (the training_step holds the forward, the loss, the metrics' update "
            "and the log calls; the Lightning optimizer step holds the whole closure, backward "
            "included). cProfile slows Python code, Lightning's more than the network's.",
            "",
        ]
        labels = [
            *dict.fromkeys(label for label, _, _ in PROFILE_PARTS),
            *(label for label, _ in PROFILE_SELF_TIME),
        ]
        header = "| part | " + " | ".join(
            f"`{row['model']}` bare | `{row['model']}` Lightning" for row in profiled
        )
        lines += [header + " |", "| --- |" + " ---: | ---: |" * len(profiled)]
        wall_cells = [
            f"{row['profile'][side]['wall_ms_per_batch']:.1f}"
            for row in profiled
            for side in ("bare", "lightning")
        ]
        lines.append("| whole run / batches | " + " | ".join(wall_cells) + " |")
        for label in labels:
            cells = []
            for row in profiled:
                for side in ("bare", "lightning"):
                    value = row["profile"][side]["parts_ms_per_batch"].get(label)
                    cells.append("–" if value is None else f"{value:.2f}")
            if any(cell != "–" for cell in cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="acnt,crnn_attn,cnn_bilstm_mha", help="comma-separated model configs"
    )
    parser.add_argument("--steps", type=int, default=40, help="timed steps per side and round")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out at the start of each run")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each timing both sides in turn")
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default: data.batch_size)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--logger", default="csv", choices=("csv", "none"), help="the Lightning side's logger"
    )
    parser.add_argument("--profile", action="store_true", help="add the cProfile attribution per model")
    parser.add_argument("--out", default=None, help="write the markdown report here (and the JSON beside it)")
    parser.add_argument("--json", default=None, help="write the measurements here (default: beside --out)")
    parser.add_argument(
        "--work-dir", default=None, help="the Trainer's run folders (default: a temporary one)"
    )
    parser.add_argument("extra", nargs="*", help="further Hydra overrides, e.g. model.net.num_layers=1")
    args = parser.parse_args(argv)
    args.models = [name for name in args.models.split(",") if name]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pytorch_lightning")
    warnings.filterwarnings("ignore", module="lightning_fabric")
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="framework_overhead_") as scratch:
        work = Path(args.work_dir) if args.work_dir else Path(scratch)
        for model_name in args.models:
            print(
                f"{model_name}: {args.rounds} rounds of {args.warmup}+{args.steps} steps per side",
                file=sys.stderr,
                flush=True,
            )
            rows.append(measure(model_name, args, work))
    load_after = os.getloadavg()
    text = report(rows, args, (load_before, load_after))
    print(text)
    json_path = Path(args.json) if args.json else Path(args.out).with_suffix(".json") if args.out else None
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"report: {args.out}", file=sys.stderr)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        record = {"args": vars(args), "load_before": load_before, "load_after": load_after, "rows": rows}
        json_path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"measurements: {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
