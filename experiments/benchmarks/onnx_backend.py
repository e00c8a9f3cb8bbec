"""The torch-free ONNX backend beside PyTorch: cold start, served rate, latency, network-only rate.

Given a checkpoint and the model folder exported from it (`python -m ser_lightning.export
ckpt_path=... quantize=int8`), this measures on this machine, side by side:

- cold start of predict on one clip (`python -m ser_lightning.predict`, a fresh process each
  time, torch checkpoint vs onnx folder), median of `--rounds`;
- served requests/s at each of `--clients` (three servers started as `ser_lightning.serve` runs
  them, batching on: torch, onnx fp32, onnx int8), the servers taking turns; per-clip latency
  p50/p95 (client side); the load generator's own CPU use (process CPU seconds over wall seconds);
- the network-only batched throughput of the same graphs in this process (batches of 8 windows,
  no decoding, no HTTP), and the served rate as a share of it (windows per clip from the files);
- the load average before and after (the machine is shared).

serve_load.py's load generator and server helpers are reused.

    python experiments/benchmarks/onnx_backend.py --checkpoint outputs/train/runs/<run>/checkpoints/best.ckpt \\
        --model-dir outputs/export/runs/<date>/model --output experiments/benchmarks/results/onnx_backend.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ROOT = HERE.parents[1]

from serve_load import HOST, Server, free_port, load, progress  # noqa: E402


class BackendServer(Server):
    """serve_load's server, for a checkpoint or a model folder at a precision."""

    def __init__(self, model: Path, precision: str, args: argparse.Namespace, work: Path, name: str):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        overrides = [
            f"ckpt_path={model}",
            f"host={HOST}",
            f"port={self.port}",
            "device=cpu",
            "web=false",
            "log_level=warning",
            f"precision={precision}",
            "batching.enabled=true",
            f"batching.max_batch_windows={args.max_batch_windows}",
            f"batching.model_threads={args.model_threads}",
            f"hydra.run.dir={work / 'serve' / name}",
        ]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        env.pop("SER_API_KEY", None)
        self.log = open(work / f"server_{name}.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ser_lightning.serve", *overrides],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )


def cold_start(model: Path, clip: Path, work: Path, rounds: int) -> float:
    """Median seconds of a fresh `predict` process scoring one clip."""
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ser_lightning.predict", f"ckpt_path={model}", f"inputs=[{clip}]", "output=json",
             "device=cpu", f"hydra.run.dir={work / 'predict' / str(i)}"],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measured_load(url: str, bodies, clients: int, requests: int) -> dict:
    """serve_load's `load`, with the load generator's CPU seconds over the same stretch."""
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    result = asyncio.run(load(url, bodies, clients, requests))
    after = resource.getrusage(resource.RUSAGE_SELF)
    result["client_cpu"] = (after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) / result["seconds"]
    return result


def network_only(
    checkpoint: Path, folder: Path, windows: np.ndarray, threads: int, seconds: float = 10.0
) -> dict[str, float]:
    """Windows/s of each backend's model alone, batches of 8 windows, in this process (one at a time).

    Each backend gets `threads` intra-op threads: on a machine shared beyond its cores, threads
    that spin on barriers wait for each other's time slices, which measures the sharing, not the model.
    """
    import onnxruntime
    import torch

    torch.set_num_threads(threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads

    from ser_lightning.inference.onnx_backend import load_onnx_model
    from ser_lightning.inference.predictor import Predictor
    from ser_lightning.model import SERModel

    batch = np.ascontiguousarray(windows[:8], dtype=np.float32)
    predictor = Predictor(SERModel.load_from_checkpoint(checkpoint), device="cpu")
    runners = {"torch": lambda: predictor.waveform_probabilities(torch.from_numpy(batch))}
    # the graph as onnxruntime runs it whole, then as the backend runs it (its STFT on numpy)
    whole = onnxruntime.InferenceSession(
        str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    runners["onnx fp32, graph whole"] = lambda: whole.run(["probabilities"], {"waveform": batch})
    for name, precision in (("onnx fp32", "fp32"), ("onnx int8", "int8")):
        session = load_onnx_model(folder, precision, threads)[0]
        runners[name] = lambda s=session: s.run(["probabilities"], {"waveform": batch})
    rates = {}
    for name, run in runners.items():
        run()
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            run()
            done += len(batch)
        rates[name] = done / (time.perf_counter() - started)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="the .ckpt the folder was exported from"
    )
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="the exported model folder (quantize=int8)"
    )
    parser.add_argument("--clients", default="8,32", help="concurrent clients, comma-separated")
    parser.add_argument("--requests", type=int, default=300, help="requests of each measured run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="cold-start rounds; served rounds per client count"
    )
    parser.add_argument("--files", type=int, default=32, help="distinct demo clips uploaded in turn")
    parser.add_argument("--max-batch-windows", type=int, default=32, help="batching.max_batch_windows")
    parser.add_argument("--data-dir", type=Path, default=Path("data/demo"), help="the demo corpus")
    parser.add_argument("--output", type=Path, default=None, help="write the results table here")
    parser.add_argument(
        "--model-threads",
        type=int,
        default=1,
        help="each server's batching.model_threads (batches scored at once)",
    )
    parser.add_argument(
        "--network-threads", type=int, default=1, help="intra-op threads of the network-only runs"
    )
    parser.add_argument("--network-only", action="store_true", help="measure the networks alone, print, stop")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    work = Path(tempfile.mkdtemp(prefix="onnx_backend_"))
    load_before = os.getloadavg()[0]
    files = sorted(args.data_dir.glob("Actor_2*/*.wav"))[: args.files]
    bodies = [(f.name, f.read_bytes()) for f in files]

    from ser_lightning.inference.onnx_backend import OnnxPredictor

    onnx = OnnxPredictor(args.model_dir)
    clips = [onnx.windows(onnx.read(f), f) for f in files]
    windows_per_clip = float(np.mean([len(c) for c in clips]))
    windows = np.concatenate([c.take(np.arange(len(c))) for c in clips])

    if args.network_only:
        print(network_only(args.checkpoint, args.model_dir, windows, args.network_threads))
        return 0
    progress("cold start of predict: torch, then onnx")
    starts = {
        "torch": cold_start(args.checkpoint, files[0], work, args.rounds),
        "onnx fp32": cold_start(args.model_dir, files[0], work, args.rounds),
    }
    progress(f"cold start: {starts}")
    servers = {
        "torch": BackendServer(args.checkpoint, "fp32", args, work, "torch"),
        "onnx fp32": BackendServer(args.model_dir, "fp32", args, work, "fp32"),
        "onnx int8": BackendServer(args.model_dir, "int8", args, work, "int8"),
    }
    rows = []
    try:
        for server in servers.values():
            server.wait_ready()
        for count in clients:
            runs: dict[str, list[dict]] = {name: [] for name in servers}
            for server in servers.values():
                measured_load(server.url, bodies, count, max(64, 4 * count))  # warm-up
            for round_ in range(args.rounds):
                for name, server in servers.items():
                    result = measured_load(server.url, bodies, count, args.requests)
                    runs[name].append(result)
                    progress(
                        f"{name}: {count} clients, round {round_ + 1}: {args.requests / result['seconds']:.1f} req/s"
                    )
            for name, results in runs.items():
                ms = np.array([x for r in results for x in r["latencies"]])
                rows.append(
                    {
                        "backend": name,
                        "clients": count,
                        "rps": float(np.median([args.requests / r["seconds"] for r in results])),
                        "p50": float(np.percentile(ms, 50)),
                        "p95": float(np.percentile(ms, 95)),
                        "errors": sum(len(r["errors"]) for r in results),
                        "client_cpu": float(np.median([r["client_cpu"] for r in results])),
                    }
                )
    finally:
        for server in servers.values():
            server.stop()
    progress("network alone, batches of 8 windows")
    network = network_only(args.checkpoint, args.model_dir, windows, args.network_threads)
    load_after = os.getloadavg()[0]

    lines = [
        "# The ONNX backend beside PyTorch (demo model, CPU)",
        "",
        "Command: `python experiments/benchmarks/onnx_backend.py "
        + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
        + "`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared; "
        f"load average {load_before:.1f} before and {load_after:.1f} after (1 min). "
        f"{len(files)} demo clips, {windows_per_clip:.2f} windows per clip; requests {args.requests} "
        f"x {args.rounds} rounds per row; batching on (max {args.max_batch_windows} windows, "
        f"model_threads={args.model_threads}).",
        "",
        "## Cold start of predict on one clip (median of rounds, seconds)",
        "",
        "| backend | seconds |",
        "|---|---|",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in starts.items()),
        "",
        f"## Network alone (batches of 8 windows, this process, {args.network_threads} intra-op thread(s))",
        "",
        "| backend | windows/s | clips/s |",
        "|---|---|---|",
        *(f"| {name} | {rate:.1f} | {rate / windows_per_clip:.1f} |" for name, rate in network.items()),
        "",
        "## Served (POST /v1/predict)",
        "",
        "| backend | clients | req/s | p50 ms | p95 ms | errors | load generator CPU (cores) | served / network-only |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['backend']} | {r['clients']} | {r['rps']:.1f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['errors']} | "
            f"{r['client_cpu']:.2f} | {r['rps'] / (network[r['backend']] / windows_per_clip):.0%} |"
            for r in rows
        ),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
