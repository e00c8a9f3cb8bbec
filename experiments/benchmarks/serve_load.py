"""The HTTP service under load: N concurrent clients, batching on and off, side by side.

Two servers run at once, as `python -m ser_lightning.serve` runs them, on 127.0.0.1 only (free
ports; web page off): one with dynamic batching on, one with it off. For each client count N of
`--clients`, each server is first warmed up at that concurrency (its larger batches grow the
allocator's pools once), then N concurrent clients send `--requests` POST /v1/predict uploads
(multipart, demo-corpus WAVs read once into memory, taken in turn), `--rounds` times, the two
servers taking turns so that a busy stretch of the machine weighs on both alike. Reported per
mode and N: requests/s (median of the rounds), latency p50/p95/p99 (client side, request sent
to answer read), errors (any answer but 200, or a failed connection), the mean number of
requests per model call (the server's /health counts), and the server's resident memory
(VmRSS) before the first and after the last round.

Without `--checkpoint`, an ACNT is trained for one epoch on the demo corpus first (throughput
depends on the network, not on how well it is trained), as inference_latency.py does, and kept
in `--work-dir`.

    python experiments/benchmarks/serve_load.py                                   # 1, 8, 32 clients, 3 x 1000 requests each
    python experiments/benchmarks/serve_load.py --clients 1,4 --requests 200 --rounds 1   # a quick look
    python experiments/benchmarks/serve_load.py --checkpoint outputs/train/runs/<run>/checkpoints/best-epoch012.ckpt \\
        --output experiments/benchmarks/results/serve_load.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# The only address this benchmark talks to: it starts its own servers and never reaches another machine.
HOST = "127.0.0.1"
# Requests sent before each measured run, at its concurrency: at least this many, or this many per
# client. With batching, every batch size the load makes leaves buffers in the allocator's pools;
# at 32 clients the server's RSS stops growing after about 1,500 requests (780 MiB after 400,
# then 860-900 MiB from 1,600 to 2,400 requests in a probe), so a short warm-up shows pool
# growth, not a leak.
WARMUP_REQUESTS = 100
WARMUP_PER_CLIENT = 50
START_TIMEOUT_S = 300


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process now (VmRSS), MiB."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 2**10


class Server:
    """`python -m ser_lightning.serve` in a child process on 127.0.0.1."""

    def __init__(self, checkpoint: Path, batching: bool, args: argparse.Namespace, work: Path):
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        overrides = [
            f"ckpt_path={checkpoint}",
            f"host={HOST}",
            f"port={self.port}",
            "device=cpu",
            "web=false",
            "log_level=warning",
            f"batching.enabled={str(batching).lower()}",
            f"batching.max_wait_ms={args.max_wait_ms}",
            f"batching.max_batch_windows={args.max_batch_windows}",
            f"hydra.run.dir={work / 'serve' / ('batching_on' if batching else 'batching_off')}",
        ]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        env.pop("SER_API_KEY", None)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        self.log = open(work / f"server_{self.port}.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ser_lightning.serve", *overrides],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
        )

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"the server did not answer /health within {START_TIMEOUT_S} s; see {self.log.name}"
        )

    def health(self) -> dict:
        import httpx

        return httpx.get(f"{self.url}/health", timeout=10).json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


async def load(url: str, bodies: list[tuple[str, bytes]], clients: int, requests: int) -> dict:
    """`requests` uploads from `clients` concurrent clients: seconds, latencies (ms) and errors."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    next_request = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_request
        while next_request < requests:
            name, body = bodies[next_request % len(bodies)]
            next_request += 1
            started = time.perf_counter()
            try:
                response = await http.post(f"{url}/v1/predict", files={"file": (name, body, "audio/wav")})
                if response.status_code != 200 or "emotion" not in response.json():
                    errors.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
                continue
            latencies.append((time.perf_counter() - started) * 1000)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "latencies": latencies, "errors": errors}


def run_all(checkpoint: Path, bodies, args, work: Path) -> list[dict]:
    """Both servers up at once; for each client count, rounds alternate batching on and off, so
    that a machine busy in one stretch of time weighs on both alike."""
    servers = {"on": Server(checkpoint, True, args, work), "off": Server(checkpoint, False, args, work)}
    rows = []
    try:
        for server in servers.values():
            server.wait_ready()
        for clients in args.clients:
            runs: dict[str, list[dict]] = {mode: [] for mode in servers}
            rss_before, counts_before = {}, {}
            for mode, server in servers.items():
                # first calls at this concurrency: larger batches grow the allocator's pools once
                warmup = max(WARMUP_REQUESTS, WARMUP_PER_CLIENT * clients)
                progress(f"batching {mode}: {clients} clients, warming up ({warmup} requests)")
                asyncio.run(load(server.url, bodies, clients, warmup))
                rss_before[mode] = rss_mib(server.process.pid)
                counts_before[mode] = server.health()["batching"]
            for round_ in range(args.rounds):
                for mode, server in servers.items():
                    result = asyncio.run(load(server.url, bodies, clients, args.requests))
                    runs[mode].append(result)
                    progress(
                        f"batching {mode}: {clients} clients, round {round_ + 1}/{args.rounds}: "
                        f"{args.requests / result['seconds']:.1f} req/s, {len(result['errors'])} errors"
                    )
            for mode, server in servers.items():
                counts = server.health()["batching"]
                batches = counts["batches"] - counts_before[mode]["batches"]
                ms = np.array([x for r in runs[mode] for x in r["latencies"]])
                errors = [e for r in runs[mode] for e in r["errors"]]
                rows.append(
                    {
                        "batching": mode,
                        "clients": clients,
                        "requests": args.requests * args.rounds,
                        "rps": float(np.median([args.requests / r["seconds"] for r in runs[mode]])),
                        "p50": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
                        "p95": float(np.percentile(ms, 95)) if len(ms) else float("nan"),
                        "p99": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
                        "errors": len(errors),
                        "first_error": errors[0] if errors else "",
                        "requests_per_batch": (counts["requests"] - counts_before[mode]["requests"]) / batches
                        if batches
                        else float("nan"),
                        "rss_before": rss_before[mode],
                        "rss_after": rss_mib(server.process.pid),
                    }
                )
    finally:
        for server in servers.values():
            server.stop()
    return rows


def report(rows: list[dict], checkpoint: Path, info: dict, args, bodies, load_before: float) -> str:
    import torch

    seconds = [len(b) / 32000 for _, b in bodies]
    lines = [
        f"## HTTP service under load: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, CPU",
        "",
        f"Model `{info.get('network')}` ({info.get('parameters', 0):,} parameters, {info['features'].get('name')} "
        f"features, {info.get('window_s')} s windows), checkpoint `{checkpoint.name}`. Uploads: {len(bodies)} demo-corpus "
        f"WAVs of {min(seconds):.2f}–{max(seconds):.2f} s (16 kHz PCM), multipart, taken in turn. "
        f"Server: `python -m ser_lightning.serve` on 127.0.0.1, device=cpu, web page off, "
        f"batching.max_batch_windows={args.max_batch_windows}, batching.max_wait_ms={args.max_wait_ms} when on; "
        f"clients: httpx in one asyncio process on the same machine. Load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after.",
        "",
        f"Each row: N concurrent clients, after a warm-up at the same concurrency, send {args.requests} "
        f"requests {args.rounds} times, the two servers (both up at once) taking turns; req/s is the median "
        "of those runs, latency (client side, request sent to answer read) the percentiles of all their "
        "requests; requests per model call from the server's /health counts; RSS is the server's resident "
        "memory before the first and after the last of the row's runs.",
        "",
        "| batching | clients | requests | req/s | p50 ms | p95 ms | p99 ms | errors | requests per model call "
        "| RSS before MiB | RSS after MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(rows, key=lambda r: (r["clients"], r["batching"] != "on")):
        lines.append(
            f"| {r['batching']} | {r['clients']} | {r['requests']} | **{r['rps']:.1f}** | {r['p50']:.0f} | "
            f"{r['p95']:.0f} | {r['p99']:.0f} | {r['errors']} | {r['requests_per_batch']:.2f} | "
            f"{r['rss_before']:.0f} | {r['rss_after']:.0f} |"
        )
    errors = [r["first_error"] for r in rows if r["errors"]]
    if errors:
        lines += ["", f"First error: `{errors[0]}`"]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="serve this checkpoint (default: train one)"
    )
    parser.add_argument("--clients", default="1,8,32", help="concurrent clients of each run, comma-separated")
    parser.add_argument("--requests", type=int, default=1000, help="requests of each run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each client count per mode, alternating"
    )
    parser.add_argument("--files", type=int, default=64, help="distinct demo clips uploaded in turn")
    parser.add_argument(
        "--actors", type=int, default=4, help="demo corpus actors (for the clips and the training)"
    )
    parser.add_argument("--max-batch-windows", type=int, default=32, help="batching.max_batch_windows")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batching.max_wait_ms")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the servers")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="where the demo corpora live")
    parser.add_argument("--work-dir", type=Path, default=None, help="checkpoint, caches and server logs")
    parser.add_argument(
        "--output", type=Path, default=None, help="also write the report to this markdown file"
    )
    args = parser.parse_args(argv)
    args.clients = tuple(int(c) for c in args.clients.split(","))
    if args.requests < 1 or min(args.clients) < 1:
        parser.error("--requests and --clients must be at least 1")
    args.features = "logmel"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))
    import logging

    import pytorch_lightning  # noqa: F401  (its import sets its loggers' level, so it comes first)
    from inference_latency import demo_root, train_checkpoint

    from ser_lightning.checkpoint import read_checkpoint
    from ser_lightning.demo_corpus import DemoCorpusSpec, ensure_demo_corpus
    from ser_lightning.model import SERModel
    from ser_lightning.serving.model_info import model_info

    for name in ("pytorch_lightning", "lightning", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    load_before = os.getloadavg()[0]
    work = (args.work_dir or Path(tempfile.mkdtemp(prefix="serve_load-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    root = ensure_demo_corpus(demo_root(args), DemoCorpusSpec(num_actors=args.actors))
    files = sorted(root.rglob("*.wav"))[:: max(1, len(sorted(root.rglob("*.wav"))) // args.files)][
        : args.files
    ]
    bodies = [(f.name, f.read_bytes()) for f in files]
    checkpoint = args.checkpoint.resolve() if args.checkpoint else train_checkpoint("acnt", args, work)
    if isinstance(checkpoint, str):
        raise SystemExit(f"cannot train a checkpoint: {checkpoint}")
    raw = read_checkpoint(checkpoint)
    info = model_info(raw, SERModel.from_checkpoint(raw, checkpoint), checkpoint)
    rows = run_all(checkpoint, bodies, args, work)
    text = report(rows, checkpoint, info, args, bodies, load_before)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        progress(f"report written to {args.output}")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
