"""WS /v1/stream under load: the time from the end of a speech segment to its event, at N streams.

One server runs as `python -m ser_lightning.serve` runs it (127.0.0.1, a free port, web page off,
stream.max_streams raised to the largest N). For each N of `--streams`, N asyncio clients (this
process, one event loop) each stream the same recording in real time: demo-corpus clips with
`--gap` seconds of silence around each, sent as 100 ms frames of s16le at the pace a microphone
gives them, the clients' starts spread over one frame. For each segment event two latencies are
taken: **total**, from sending the frame that held the segment's last speech sample (its end less
stream.speech_pad_ms) to receiving the event, whose floor is the detector's wait by design
(stream.min_silence_ms of silence must arrive first); and **server**, from sending the frame that
completed that silence to receiving the event (detection, scoring through the batcher, sending).
Reported per N: segments, errors, p50/p95/max, the 1-minute load average at the end, and the
client process's CPU seconds (the load generator's own share of the 2 cores). The answer to
"how many streams keep p95 under 300 ms" is the largest N whose p95 is under it.

    python experiments/benchmarks/stream_latency.py                       # 1, 2, 4, 8 streams
    python experiments/benchmarks/stream_latency.py --streams 1,4 --clips 3 \\
        --checkpoint outputs/train/runs/<run>/checkpoints/best-epoch014.ckpt \\
        --output experiments/benchmarks/results/stream_latency.md
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
FRAME_S = 0.1  # seconds of audio per frame a client sends (--frame-ms)
BUDGET_MS = 300.0
SPEECH_PAD = 480  # samples: stream.speech_pad_ms=30 of conf/serve.yaml
MIN_SILENCE = 3200  # samples: stream.min_silence_ms of the server (--min-silence-ms)


def recording(root: Path, clips: int, gap: float) -> tuple[np.ndarray, list[float]]:
    """`clips` demo clips (different emotions, one actor) with `gap` s of silence around each:
    the int16 samples and the time (s) of each clip's last sample."""
    import soundfile as sf

    files = sorted(root.glob("Actor_01/*.wav"))[:: max(1, len(sorted(root.glob("Actor_01/*.wav"))) // clips)][
        :clips
    ]
    silence = np.zeros(int(gap * 16000), np.float32)
    parts, ends, at = [silence], [], gap
    for path in files:
        wave, rate = sf.read(path, dtype="float32")
        if rate != 16000:
            raise SystemExit(f"{path} is at {rate} Hz; the stream takes 16 kHz clips")
        parts += [wave, silence]
        ends.append(at + len(wave) / rate)
        at += len(wave) / rate + gap
    wave = np.concatenate(parts)
    return (np.clip(wave, -1, 1) * 32767).round().astype("<i2"), ends


async def one_stream(url: str, pcm: np.ndarray, delay: float) -> tuple[list[float], list[float], int]:
    """Stream `pcm` in real time: each segment's latency (ms) after the frame holding its last speech
    sample, and after the frame that ended its silence (the server's part), and the errors."""
    from ser_lightning.serving.streaming_client import StreamClient

    await asyncio.sleep(delay)
    client = await StreamClient.connect(url)
    assert (await client.event())["type"] == "ready"
    frame = int(FRAME_S * 16000)
    sent_at: dict[int, float] = {}  # frame number -> when it was sent

    async def send() -> None:
        start = time.perf_counter()
        for i, at in enumerate(range(0, len(pcm), frame)):
            await asyncio.sleep(max(0.0, start + i * FRAME_S - time.perf_counter()))
            await client.send_audio(pcm[at : at + frame].tobytes())
            sent_at[i] = time.perf_counter()
        await client.end()

    sender = asyncio.create_task(send())
    latencies, server, errors = [], [], 0
    async for event in client.events():
        if event["type"] == "segment":
            arrived = time.perf_counter()
            # the segment's last speech sample: its end less the padding (a forced cut: its end)
            silent_from = int(round(event["end_s"] * 16000)) - (0 if event.get("forced") else SPEECH_PAD)
            last_frame = max(0, silent_from - 1) // frame
            # the detector frame that closed it: min_silence_ms of whole 512-sample frames later
            closing = silent_from + (0 if event.get("forced") else -(-MIN_SILENCE // 512) * 512)
            closing_frame = max(0, closing - 1) // frame
            if last_frame in sent_at and closing_frame in sent_at:
                latencies.append((arrived - sent_at[last_frame]) * 1000)
                server.append((arrived - sent_at[closing_frame]) * 1000)
        elif event["type"] == "error":
            errors += 1
    await sender
    return latencies, server, errors


async def load(url: str, pcm: np.ndarray, streams: int) -> dict:
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    results = await asyncio.gather(*(one_stream(url, pcm, FRAME_S * i / streams) for i in range(streams)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    total = np.array([v for lat, _, _ in results for v in lat])
    server = np.array([v for _, lat, _ in results for v in lat])

    def pct(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) if len(values) else float("nan")

    return {
        "streams": streams,
        "segments": len(total),
        "errors": sum(e for *_, e in results),
        "p50": pct(total, 50),
        "p95": pct(total, 95),
        "max": float(total.max()) if len(total) else float("nan"),
        "server_p50": pct(server, 50),
        "server_p95": pct(server, 95),
        "load1": os.getloadavg()[0],
        "client_cpu_s": (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime),
    }


def report(rows: list[dict], args, checkpoint: Path, seconds: float, load_before) -> str:
    under = [r["streams"] for r in rows if r["p95"] < BUDGET_MS and not r["errors"]]
    under_server = [r["streams"] for r in rows if r["server_p95"] < BUDGET_MS and not r["errors"]]
    lines = [
        "# WS /v1/stream: latency from the end of a segment to its event",
        "",
        f"Command: `python experiments/benchmarks/stream_latency.py --streams {args.streams} --clips {args.clips} "
        f"--gap {args.gap} --frame-ms {args.frame_ms} --min-silence-ms {args.min_silence_ms}`  ",
        f"Checkpoint: `{checkpoint.name}`; {os.cpu_count()} CPUs shared with other jobs; load average before: "
        + ", ".join(f"{v:.1f}" for v in load_before)
        + f"; a recording of {seconds:.1f} s ({args.clips} demo clips, {args.gap} s of silence around each), "
        f"sent in real time as {int(FRAME_S * 1000)} ms frames of s16le by each stream, the streams' starts "
        "spread over one frame.",
        "",
        "- **total**: from sending the frame that held a segment's last speech sample to receiving its "
        "segment event. Its floor is the detector's wait, by design: stream.min_silence_ms="
        f"{args.min_silence_ms} ms of silence (whole 32 ms detector frames: {-(-MIN_SILENCE // 512) * 32} ms) must "
        f"arrive, in {int(FRAME_S * 1000)} ms frames.",
        "- **server**: from sending the frame that completed that silence to receiving the event: detection, "
        "scoring through the batcher and sending.",
        "",
        "| streams | segments | errors | total p50 ms | total p95 ms | total max ms | server p50 ms | server p95 ms "
        "| load avg (1 min) after | client CPU s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['streams']} | {r['segments']} | {r['errors']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['max']:.0f} | "
            f"{r['server_p50']:.0f} | {r['server_p95']:.0f} | {r['load1']:.1f} | {r['client_cpu_s']:.1f} |"
        )

    def most(found: list[int]) -> str:
        return f"**{max(found)} streams**" if found else "**none of the stream counts tried**"

    lines += [
        "",
        f"p95 under {BUDGET_MS:.0f} ms: total, up to {most(under)}; server part, up to {most(under_server)}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the latest run's best")
    parser.add_argument(
        "--data", type=Path, default=ROOT / "data" / "demo", help="a demo corpus (RAVDESS layout)"
    )
    parser.add_argument("--streams", default="1,2,4,8")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--gap", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frame-ms", type=int, default=100, help="audio per frame each client sends")
    parser.add_argument("--min-silence-ms", type=int, default=200, help="the server's stream.min_silence_ms")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    global FRAME_S, MIN_SILENCE  # the timing every client and the latency arithmetic share
    FRAME_S, MIN_SILENCE = args.frame_ms / 1000, args.min_silence_ms * 16

    from ser_lightning.serving.latest import latest_checkpoint

    checkpoint = args.checkpoint or latest_checkpoint(ROOT / "outputs" / "train" / "runs")
    if checkpoint is None:
        raise SystemExit("no checkpoint: train one (make train) or pass --checkpoint")
    counts = [int(n) for n in args.streams.split(",")]
    pcm, ends = recording(args.data, args.clips, args.gap)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as work:
        server = StreamServer(Path(checkpoint).resolve(), max(counts), args, Path(work))
        try:
            server.wait_ready()
            rows = []
            for n in counts:
                print(f"{n} stream(s) of {len(pcm) / 16000:.1f} s ...", file=sys.stderr, flush=True)
                rows.append(asyncio.run(load(f"ws://127.0.0.1:{server.port}/v1/stream?format=s16le", pcm, n)))
                print(
                    f"  p50 {rows[-1]['p50']:.0f} ms, p95 {rows[-1]['p95']:.0f} ms, "
                    f"server p95 {rows[-1]['server_p95']:.0f} ms, {rows[-1]['segments']} segments",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            server.stop()
    text = report(rows, args, Path(checkpoint), len(pcm) / 16000, load_before)
    print(text)
    if args.output:
        args.output.write_text(text)


class StreamServer:
    """`python -m ser_lightning.serve` on 127.0.0.1 with the stream limits of this benchmark."""

    def __new__(cls, checkpoint: Path, streams: int, args, work: Path):
        from serve_load import Server, free_port

        server = Server.__new__(Server)
        server.port = free_port()
        server.url = f"http://127.0.0.1:{server.port}"
        overrides = [
            f"ckpt_path={checkpoint}",
            "host=127.0.0.1",
            f"port={server.port}",
            "device=cpu",
            "web=false",
            "log_level=warning",
            f"stream.max_streams={streams}",
            f"stream.min_silence_ms={args.min_silence_ms}",
            f"hydra.run.dir={work}/serve",
        ]
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        env.pop("SER_API_KEY", None)
        env["OMP_NUM_THREADS"] = str(args.threads)
        import subprocess

        server.log = open(work / f"server_{server.port}.log", "w")  # noqa: SIM115 (closed in stop)
        server.process = subprocess.Popen(
            [sys.executable, "-m", "ser_lightning.serve", *overrides],
            cwd=ROOT,
            env=env,
            stdout=server.log,
            stderr=server.log,
        )
        return server


if __name__ == "__main__":
    main()
