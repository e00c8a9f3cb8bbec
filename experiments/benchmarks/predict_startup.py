"""Start-up cost of predict: `python -m ser_lightning.predict` on one 3 s file from a cold process,
side by side with `python -c "import torch"` (and, for reference, importing Lightning), on the
same machine in the same run.

Rounds alternate the commands (torch, Lightning, predict, torch, ...) so that a machine busy in
one stretch of time weighs on all of them alike; each is timed process start to exit; the table
gives the median and the spread of `--rounds` rounds, and predict's median over torch's.

Without `--checkpoint`, an ACNT is trained for one epoch on the demo corpus first, as
inference_latency.py does (start-up does not depend on how well it is trained).

    python experiments/benchmarks/predict_startup.py
    python experiments/benchmarks/predict_startup.py --rounds 9 --output experiments/benchmarks/results/predict_startup.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seconds_of(command: list[str], env: dict, cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="the model predict loads (default: train one)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the three commands")
    parser.add_argument(
        "--actors", type=int, default=4, help="demo corpus actors (for the file and the training)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="where the demo corpora live")
    parser.add_argument("--work-dir", type=Path, default=None, help="checkpoint and predict run folders")
    parser.add_argument(
        "--baseline-root",
        type=Path,
        default=None,
        help="also time predict from this other checkout of ser_lightning (e.g. an earlier commit)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, help="also write the report to this markdown file"
    )
    args = parser.parse_args(argv)
    args.features = "logmel"
    sys.path.insert(0, str(HERE))
    import soundfile as sf
    import torch
    from inference_latency import demo_root, train_checkpoint

    from ser_lightning.demo_corpus import DemoCorpusSpec, ensure_demo_corpus

    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="predict_startup-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    root = ensure_demo_corpus(demo_root(args), DemoCorpusSpec(num_actors=args.actors))
    clip = min(root.rglob("*.wav"), key=lambda p: abs(sf.info(str(p)).duration - 3.0))
    checkpoint = args.checkpoint.resolve() if args.checkpoint else train_checkpoint("acnt", args, work)
    if isinstance(checkpoint, str):
        raise SystemExit(f"cannot train a checkpoint: {checkpoint}")
    # Python's default: compiled bytecode kept and reused (an environment may turn that off with
    # PYTHONDONTWRITEBYTECODE, and then every process compiles torch from source again); kept
    # here in a folder of this run, filled by a first round that is not counted.
    cache = {"PYTHONPYCACHEPREFIX": str(work / "pycache")}
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env = {**base, **cache, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    commands = {
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
        'python -c "import pytorch_lightning"': [sys.executable, "-c", "import pytorch_lightning"],
        "predict, one 3 s file": [
            sys.executable,
            "-m",
            "ser_lightning.predict",
            f"ckpt_path={checkpoint}",
            f"inputs=[{clip}]",
            "device=cpu",
            "save_csv=false",
            f"hydra.run.dir={work / 'predict_run'}",
        ],
    }
    envs = {name: env for name in commands}
    cwds = {name: ROOT for name in commands}
    if args.baseline_root:
        name = f"predict, one 3 s file, from {args.baseline_root}"
        commands[name] = [*commands["predict, one 3 s file"][:-1], f"hydra.run.dir={work / 'baseline_run'}"]
        envs[name] = {**base, **cache, "PYTHONPATH": str(args.baseline_root.resolve())}
        # `python -m` puts the working folder first on sys.path: run it from the other checkout
        cwds[name] = args.baseline_root.resolve()
    times: dict[str, list[float]] = {name: [] for name in commands}
    progress("a first round, not counted, compiles the bytecode caches")
    for name, command in commands.items():
        seconds_of(command, envs[name], cwds[name])
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds):
        for name, command in commands.items():
            times[name].append(seconds_of(command, envs[name], cwds[name]))
        progress(
            f"round {round_ + 1}/{args.rounds}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items())
        )
    torch_median = statistics.median(times['python -c "import torch"'])
    lines = [
        f"## Start-up of predict: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "",
        f"Each command from a cold process (process start to exit), {args.rounds} rounds after one not "
        "counted, the commands alternating within each round, Python's bytecode caches on (its default); "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after. "
        f"predict: `python -m ser_lightning.predict ckpt_path={checkpoint.name} inputs=[{clip.name}] device=cpu` "
        f"({sf.info(str(clip)).duration:.2f} s WAV, ACNT on log-mel).",
        "",
        "| command | median s | min s | max s | median / import torch |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, values in times.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | **{median:.2f}** | {min(values):.2f} | {max(values):.2f} | {median / torch_median:.2f}× |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        progress(f"report written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
