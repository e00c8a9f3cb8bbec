"""Inference cost on CPU per model: latency of one file, throughput of many, peak memory.

Everything goes through the project's own prediction code (`SERModel.load_from_checkpoint`,
`inference.predictor.Predictor`), so the numbers are those of `python -m ser_lightning.predict`:

- one 3 s file, warm: `predict_files([file])` end to end (read and decode, windows, features,
  network, softmax), median and p90 over `--repeats` calls after warm-up calls, and the same
  stages timed one by one;
- one-off costs: `SERModel.load_from_checkpoint` in a warm process; a fresh process (imports, load, first and
  second prediction); the CLI `python -m ser_lightning.predict` on one file as a subprocess;
- throughput: clips/s of `predict_files` over every clip of the demo corpus (decoding
  included), and of the network alone (`waveform_probabilities` on decoded clips) per batch size;
- peak resident memory (ru_maxrss) of fresh processes that score one file, every file, and of
  the CLI, so that nothing else this script does pollutes it.

Without `--checkpoint`, each model of `--models` is first trained for one epoch on the demo
corpus (latency depends on the architecture, not on how well it is trained) and its checkpoint
is kept in `--work-dir`, so a second run reuses it.

    python experiments/benchmarks/inference_latency.py                           # ACNT, 24 actors (1440 clips)
    python experiments/benchmarks/inference_latency.py --models acnt,crnn_attn,cnn_bilstm_mha --threads 2
    python experiments/benchmarks/inference_latency.py --actors 4 --repeats 5    # a quick look
    python experiments/benchmarks/inference_latency.py --checkpoint outputs/train/runs/<run>/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Heavy imports (torch, ser_lightning) happen inside functions: the fresh-process measurements
# run this file as a child and time those imports themselves.

FULL_DEMO_ACTORS = 24
BATCH_SIZES = (1, 8, 32, 128)
WARMUP_CALLS = 3
NETWORK_BUDGET_SECONDS = 10.0  # per batch size: stop repeating once this much time is spent


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def maxrss_mib(ru_maxrss: int) -> float:
    """ru_maxrss in MiB (Linux reports KiB, macOS bytes)."""
    return ru_maxrss / 2**20 if sys.platform == "darwin" else ru_maxrss / 2**10


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far.

    On Linux VmHWM, the high-water mark of this program's own memory: ru_maxrss would also count
    the parent's peak, which a child inherits through fork and exec.
    """
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) / 2**10
    except (OSError, StopIteration):
        return maxrss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q))


def timed(fn, repeats: int, budget: float = float("inf"), minimum: int = 3) -> list[float]:
    """Seconds of `repeats` calls of fn, stopping early (after `minimum`) once `budget` is spent."""
    seconds: list[float] = []
    spent = 0.0
    while len(seconds) < repeats and (len(seconds) < minimum or spent < budget):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
        spent += seconds[-1]
    return seconds


# A small launcher runs each measured command: on Linux a child's ru_maxrss starts at its
# parent's peak (it is inherited through fork and exec), so the command must be forked from a
# process as small as this one, not from this benchmark's large process.
LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    json.dump({"seconds": seconds, "code": os.waitstatus_to_exitcode(status), "ru_maxrss": usage.ru_maxrss}, out)
"""


def run_measured(command: list[str], env: dict[str, str], cwd: Path) -> dict:
    """Run a command to its end: wall seconds, exit code, its own peak RSS (wait4), stdout, stderr."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        record = Path(tmp) / "record.json"
        subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(record), *command],
            stdout=out,
            stderr=err,
            env=env,
            cwd=cwd,
            check=True,
        )
        measured = json.loads(record.read_text())
        out.seek(0)
        err.seek(0)
        return {
            "seconds": measured["seconds"],
            "code": measured["code"],
            "rss_mib": maxrss_mib(measured["ru_maxrss"]),
            "stdout": out.read().decode(errors="replace"),
            "stderr": err.read().decode(errors="replace"),
        }


def child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


# --------------------------------------------------------------------------- fresh process
def child_main(args: argparse.Namespace) -> int:
    """Runs in a fresh process: imports, load, prediction; one JSON line of timings and peaks."""
    started = time.perf_counter()
    import torch

    from ser_lightning.inference.media import collect_inputs
    from ser_lightning.inference.predictor import Predictor
    from ser_lightning.model import SERModel

    if args.threads:
        torch.set_num_threads(args.threads)
    record = {"import_s": time.perf_counter() - started, "rss_import_mib": peak_rss_mib()}
    files, errors = collect_inputs(args.child_inputs)
    assert not errors, errors
    started = time.perf_counter()
    module = SERModel.load_from_checkpoint(args.checkpoint[0])
    record.update(load_s=time.perf_counter() - started, rss_load_mib=peak_rss_mib())
    predictor = Predictor(module, device="cpu", batch_size=args.batch_size)
    for key in ("first", "second")[: args.child_passes]:
        started = time.perf_counter()
        results = list(predictor.predict_files(files, decode_workers=args.decode_workers))
        record[f"{key}_predict_s"] = time.perf_counter() - started
    record.update(files=len(results), rss_mib=peak_rss_mib())
    print(json.dumps(record))
    return 0


def fresh_process(checkpoint: Path, inputs: list[str], args: argparse.Namespace, passes: int) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--child-passes",
        str(passes),
        "--checkpoint",
        str(checkpoint),
        "--batch-size",
        str(args.batch_size),
        "--decode-workers",
        str(args.decode_workers),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    result = run_measured([*command, "--", *inputs], child_env(args.threads), Path.cwd())
    if result["code"] != 0:
        raise RuntimeError(f"the measuring child failed ({result['code']}):\n{result['stderr'][-3000:]}")
    return {
        **json.loads(result["stdout"].strip().splitlines()[-1]),
        "wall_s": result["seconds"],
        "rss_wait4_mib": result["rss_mib"],
    }


def cli_runs(checkpoint: Path, file: Path, args: argparse.Namespace, work: Path) -> list[dict]:
    """`python -m ser_lightning.predict` on one file, as a user runs it (its run folder in work)."""
    runs = []
    for i in range(args.cli_repeats):
        command = [
            sys.executable,
            "-m",
            "ser_lightning.predict",
            f"ckpt_path={checkpoint}",
            f"inputs=[{file}]",
            "device=cpu",
            f"hydra.run.dir={work / 'predict_cli' / checkpoint.stem / str(i)}",
        ]
        result = run_measured(command, child_env(args.threads), Path.cwd())
        if result["code"] != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` failed ({result['code']}):\n{result['stderr'][-3000:]}"
            )
        runs.append(result)
    return runs


# --------------------------------------------------------------------------- checkpoints
def demo_root(args: argparse.Namespace) -> Path:
    name = "demo" if args.actors == FULL_DEMO_ACTORS else f"demo_{args.actors}actors"
    return (args.data_dir / name).resolve()


def train_checkpoint(model: str, args: argparse.Namespace, work: Path) -> Path | str:
    """One training epoch of `model` on the demo corpus, saved as train.py's checkpoints are.

    Returns the checkpoint, or the reason the model cannot take these features.
    """
    import pytorch_lightning as pl
    from bench_config import timing_config

    from ser_lightning.train import build
    from ser_lightning.utils.jobs import StartupError

    path = work / "checkpoints" / f"{model}-{args.features}-{args.actors}actors.ckpt"
    if path.is_file():
        progress(f"{model}: reusing {path}")
        return path
    progress(f"{model}: training one epoch on {args.features} ({60 * args.actors} clips) for a checkpoint")
    run_dir = work / "train" / model
    overrides = [
        f"model={model}",
        f"features={args.features}",
        "data=demo",
        f"data.demo.num_actors={args.actors}",
        f"data.root={demo_root(args)}",
        "data.split=random",
        f"paths.cache_dir={work / 'cache'}",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
    ]
    cfg = timing_config(overrides, run_dir)
    pl.seed_everything(cfg.seed, verbose=False)
    try:
        objects = build(cfg)
    except StartupError as error:
        return str(error).split(": ", 1)[-1]
    datamodule, trainer = objects["datamodule"], objects["trainer"]
    datamodule.prepare_data()
    datamodule.setup("fit")
    trainer.fit(objects["model"], datamodule=datamodule, weights_only=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The trainer's own save: hyper-parameters, weights and the CheckpointRecord callback's record,
    # the same content as the ModelCheckpoint files of `python -m ser_lightning.train`.
    trainer.save_checkpoint(path)
    return path


# --------------------------------------------------------------------------- measurements
def pick_single_file(durations: dict[Path, float], window: float) -> tuple[Path, float]:
    """The clip closest to the model's window that still fits in one window."""
    fitting = {f: d for f, d in durations.items() if d <= window} or durations
    path = min(fitting, key=lambda f: abs(fitting[f] - window))
    return path, fitting[path]


STAGES = ("decode", "windows", "features", "network", "softmax")


def staged_call(predictor, file: Path) -> dict[str, float]:
    """Seconds of each stage of predict_files for one file, run one by one with the same functions."""
    import torch

    from ser_lightning.inference.media import read_media
    from ser_lightning.inference.windows import clip_windows

    audio, module = predictor.audio, predictor.module
    t0 = time.perf_counter()
    wave = read_media(file, audio.sample_rate)
    t1 = time.perf_counter()
    clip = clip_windows(wave, audio, audio.duration / 2, "windows")
    batch = torch.from_numpy(clip.take(list(range(len(clip)))))
    t2 = time.perf_counter()
    with torch.inference_mode():
        features = module.inputs({"waveform": batch})
        t3 = time.perf_counter()
        logits = module(features)
        t4 = time.perf_counter()
        torch.softmax(logits.float(), dim=-1).cpu().numpy()
    t5 = time.perf_counter()
    return dict(zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True))


def network_throughput(module, waves, batch_sizes: tuple[int, ...], repeats: int) -> dict[int, float]:
    """Clips/s of waveform_probabilities on decoded clips, one call per batch of each size."""
    import numpy as np

    from ser_lightning.inference.predictor import Predictor

    rates = {}
    for size in batch_sizes:
        predictor = Predictor(module, device="cpu", batch_size=size)
        batch = np.resize(waves, (size, waves.shape[1]))  # repeats clips when there are fewer than size
        predictor.waveform_probabilities(batch)  # warm-up
        seconds = timed(
            lambda b=batch, p=predictor: p.waveform_probabilities(b), repeats, NETWORK_BUDGET_SECONDS
        )
        rates[size] = size / statistics.median(seconds)
        progress(f"    network only, batch {size}: {rates[size]:.0f} clips/s")
    return rates


def measure(
    name: str,
    checkpoint: Path,
    root: Path,
    durations: dict[Path, float],
    args: argparse.Namespace,
    work: Path,
) -> dict:
    import numpy as np

    from ser_lightning.inference.media import read_media
    from ser_lightning.inference.predictor import Predictor
    from ser_lightning.inference.windows import clip_windows
    from ser_lightning.model import SERModel

    row: dict = {"model": name, "ckpt_mib": checkpoint.stat().st_size / 2**20}
    loads = timed(lambda: SERModel.load_from_checkpoint(checkpoint), 1 + args.load_repeats)
    row["load_warm_s"] = statistics.median(loads[1:])  # the first load also imports the model's code
    module = SERModel.load_from_checkpoint(checkpoint)
    row["params"] = sum(p.numel() for p in module.net.parameters())
    predictor = Predictor(module, device="cpu", batch_size=args.batch_size)

    files = list(durations)
    file, duration = pick_single_file(durations, module.audio.duration)
    row["file_s"] = duration
    progress(f"  {name}: one file ({file.name}, {duration:.2f} s), {args.repeats} warm calls")

    # End to end and stage by stage alternate, so that both see the same machine load.
    row["e2e"], row["stages"] = [], {stage: [] for stage in STAGES}
    for i in range(WARMUP_CALLS + args.repeats):
        started = time.perf_counter()
        list(predictor.predict_files([file], decode_workers=args.decode_workers))
        seconds = time.perf_counter() - started
        stages = staged_call(predictor, file)
        if i >= WARMUP_CALLS:
            row["e2e"].append(seconds)
            for stage in STAGES:
                row["stages"][stage].append(stages[stage])

    progress(f"  {name}: predict_files over {len(files)} clips")
    list(predictor.predict_files(files[: args.batch_size], decode_workers=args.decode_workers))  # warm-up
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        results = list(predictor.predict_files(files, decode_workers=args.decode_workers))
        best = min(best, time.perf_counter() - started)
    row["files_per_s"] = len(files) / best
    row["windows_per_file"] = sum(len(r.window_spans) for r in results) / len(results)
    progress(f"    {row['files_per_s']:.0f} clips/s ({row['windows_per_file']:.2f} windows per clip)")

    progress(f"  {name}: network only on decoded clips")
    audio = module.audio
    waves = np.stack(
        [
            clip_windows(read_media(f, audio.sample_rate), audio, audio.duration / 2, "crop").take([0])[0]
            for f in files[: max(args.batch_sizes)]
        ]
    )
    row["network"] = network_throughput(module, waves, args.batch_sizes, args.repeats)

    progress(f"  {name}: fresh processes (one file, {len(files)} files) and the CLI ×{args.cli_repeats}")
    row["fresh_single"] = fresh_process(checkpoint, [str(file)], args, passes=2)
    row["fresh_batch"] = fresh_process(checkpoint, [str(root)], args, passes=1)
    row["cli"] = cli_runs(checkpoint, file, args, work)
    return row


# --------------------------------------------------------------------------- report
def ms(seconds: float) -> str:
    return f"{1000 * seconds:.1f}"


def report(
    rows: list[dict],
    skipped: list[tuple[str, str]],
    args: argparse.Namespace,
    corpus: dict,
    load: tuple[float, float],
) -> str:
    import torch

    lines = [
        f"## Inference on CPU: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads",
        "",
        f"Demo corpus, {args.actors} actors ({corpus['files']} clips of {corpus['shortest']:.2f}–{corpus['longest']:.2f} s, "
        f"{corpus['rate']} Hz WAV), features `{args.features}`, "
        f"batch {args.batch_size}, {args.decode_workers} decode threads (predict.yaml's defaults); "
        f"load average {load[0]:.1f} before, {load[1]:.1f} after.",
        "",
        f"### One file, warm (ms; median and p90 of {args.repeats} calls after {WARMUP_CALLS} warm-up calls)",
        "",
        "`predict_files([file])` end to end, then each stage timed alone (medians); "
        "`other` = end to end minus the stages (thread pool, batching, result objects).",
        "",
        "| model | params | file | end to end | p90 | decode | windows | features | network | softmax | other |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        stages = {k: statistics.median(v) for k, v in r["stages"].items()}
        e2e = statistics.median(r["e2e"])
        lines.append(
            f"| `{r['model']}` | {r['params']:,} | {r['file_s']:.2f} s | **{ms(e2e)}** | {ms(percentile(r['e2e'], 90))} | "
            + " | ".join(ms(stages[k]) for k in STAGES)
            + f" | {ms(e2e - sum(stages.values()))} |"
        )
    lines += [
        "",
        "### One-off costs (s)",
        "",
        "Fresh process: this file run as a child (`import torch` and the project's inference modules, "
        f"`SERModel.load_from_checkpoint`, then `predict_files` on the file twice). CLI: `python -m ser_lightning.predict "
        f"ckpt_path=... inputs=[file] device=cpu` as a subprocess, process start to exit, median of {args.cli_repeats}.",
        "",
        "| model | checkpoint | load, warm process | fresh: imports | fresh: load | fresh: 1st predict | "
        "fresh: 2nd predict | CLI, one file |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        f = r["fresh_single"]
        cli = statistics.median(run["seconds"] for run in r["cli"])
        lines.append(
            f"| `{r['model']}` | {r['ckpt_mib']:.1f} MiB | {r['load_warm_s']:.3f} | {f['import_s']:.2f} | "
            f"{f['load_s']:.3f} | {f['first_predict_s']:.3f} | {f['second_predict_s']:.3f} | **{cli:.2f}** |"
        )
    sizes = args.batch_sizes
    lines += [
        "",
        "### Throughput (clips/s)",
        "",
        f"`predict_files`: every clip of the corpus, decoding included (best of 2 passes; clips longer than "
        f"the window are scored as 2 overlapping windows). Network only: `waveform_probabilities` on decoded "
        f"3 s clips (features, network, softmax), median over up to {args.repeats} calls per batch size.",
        "",
        "| model | predict_files | windows per clip | "
        + " | ".join(f"network, batch {b}" for b in sizes)
        + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in sizes) + " |",
    ]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | **{r['files_per_s']:.0f}** | {r['windows_per_file']:.2f} | "
            + " | ".join(f"{r['network'][b]:.0f}" for b in sizes)
            + " |"
        )
    lines += [
        "",
        "### Peak resident memory (MiB)",
        "",
        "Peak resident set size of fresh processes: the child above after its imports, after `SERModel.load_from_checkpoint` "
        "and at its end (one file; every file of the corpus in one `predict_files` call), and the CLI on one file.",
        "",
        f"| model | after imports | after load | one file | every file ({corpus['files']}) | CLI, one file |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        single, batch = r["fresh_single"], r["fresh_batch"]
        cli = max(run["rss_mib"] for run in r["cli"])
        lines.append(
            f"| `{r['model']}` | {single['rss_import_mib']:.0f} | {single['rss_load_mib']:.0f} | "
            f"{single['rss_wait4_mib']:.0f} | {batch['rss_wait4_mib']:.0f} | {cli:.0f} |"
        )
    for model, reason in skipped:
        lines.append(f"\n`{model}` × `{args.features}` was not measured: {reason}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default="acnt", help="comma-separated model configs (conf/model), e.g. acnt,crnn_attn"
    )
    parser.add_argument("--features", default="logmel", help="features config the models are trained on")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        action="append",
        default=[],
        help="measure this checkpoint instead of training (repeatable; --models is then ignored)",
    )
    parser.add_argument(
        "--actors", type=int, default=FULL_DEMO_ACTORS, help="demo corpus actors (even, 4..24; 60 clips each)"
    )
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per latency measurement")
    parser.add_argument(
        "--load-repeats",
        type=int,
        default=5,
        help="timed SERModel.load_from_checkpoint calls in the warm process",
    )
    parser.add_argument(
        "--cli-repeats", type=int, default=3, help="runs of the predict CLI (median reported)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="Predictor batch size (predict.yaml: 32)")
    parser.add_argument(
        "--batch-sizes", default=",".join(map(str, BATCH_SIZES)), help="network-only batch sizes"
    )
    parser.add_argument("--decode-workers", type=int, default=4, help="decode threads (predict.yaml: 4)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads here, in the children and the CLI (default: torch's)",
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="where the demo corpora live")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="checkpoints, feature caches and CLI run folders (default: a new temporary folder)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="also write the report to this markdown file"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-passes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("child_inputs", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child:
        if args.actors % 2 or not 4 <= args.actors <= FULL_DEMO_ACTORS:
            parser.error("--actors must be even and in 4..24 (the demo corpus needs both genders)")
        if args.repeats < 3:
            parser.error("--repeats must be at least 3")
        args.batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)

    import logging

    import pytorch_lightning  # noqa: F401  (its import sets its loggers' level, so it comes first)
    import soundfile as sf
    import torch

    from ser_lightning.demo_corpus import DemoCorpusSpec, ensure_demo_corpus
    from ser_lightning.inference.media import collect_inputs

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="inference_latency-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    root = ensure_demo_corpus(demo_root(args), DemoCorpusSpec(num_actors=args.actors))
    files, _ = collect_inputs([str(root)])
    infos = [sf.info(str(f)) for f in files]
    durations = {f: info.duration for f, info in zip(files, infos, strict=True)}
    corpus = {
        "files": len(files),
        "shortest": min(durations.values()),
        "longest": max(durations.values()),
        "rate": "/".join(sorted({str(info.samplerate) for info in infos})),
    }
    progress(f"{len(files)} clips in {root}; work folder {work}")

    load_before = os.getloadavg()[0]
    rows, skipped = [], []
    if args.checkpoint:
        targets = [(path.stem, path.resolve()) for path in args.checkpoint]
    else:
        targets = []
        for model in args.models.split(","):
            trained = train_checkpoint(model, args, work)
            if isinstance(trained, str):
                skipped.append((model, trained))
                progress(f"{model}: skipped, {trained}")
            else:
                targets.append((model, trained))
    for name, checkpoint in targets:
        progress(f"{name}: measuring {checkpoint}")
        rows.append(measure(name, checkpoint, root, durations, args, work))
    text = report(rows, skipped, args, corpus, (load_before, os.getloadavg()[0]))
    print("\n" + text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
