"""Segmenting a recording for its timeline: the old torch path against the ONNX segmenter.

Both find the speech in the same 60 s recording (demo clips of one actor with pauses of 0.3-1.5 s
between them, 16 kHz) with the timelines' default settings (conf/predict.yaml):

- torch (the timelines' path until this benchmark): silero-vad's `get_speech_timestamps` with
  its TorchScript model (`load_silero_vad()`, which sets torch to one thread);
- onnx (now, both backends): `inference.speech_activity.find_speech`, silero-vad's ONNX model on
  onnxruntime (one thread) and the same rules in numpy, no torch.

Each is warmed up once (the model loaded), then timed `--repeats` times in turn; the report gives
the median and the fastest, the first call's cost (loading the model) and whether the two found
the same segments to within one 32 ms frame. The machine may be shared: the report prints the
load average before and after.

    .venv/bin/python experiments/benchmarks/vad_segmenter.py > experiments/benchmarks/results/vad_segmenter.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
RATE = 16000
FRAME = 512  # one detector frame at 16 kHz


def recording(root: Path, seconds: float, seed: int = 0) -> tuple[np.ndarray, int]:
    """Demo clips of Actor_01 in turn with pauses of 0.3-1.5 s, cut to `seconds`; and the clips used."""
    import soundfile as sf

    files = sorted(root.glob("Actor_01/*.wav"))
    if not files:
        raise SystemExit(f"no demo clips under {root}/Actor_01: pass --data (a demo corpus, RAVDESS layout)")
    rng = np.random.default_rng(seed)
    parts, total, used = [], 0, 0
    while total < seconds * RATE:
        wave, rate = sf.read(files[used % len(files)], dtype="float32")
        if rate != RATE:
            raise SystemExit(f"{files[used % len(files)]} is at {rate} Hz; this benchmark takes 16 kHz clips")
        pause = np.zeros(int(rng.uniform(0.3, 1.5) * RATE), np.float32)
        parts += [pause, wave]
        total += len(pause) + len(wave)
        used += 1
    return np.concatenate(parts)[: int(seconds * RATE)], used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=ROOT / "data" / "demo", help="a demo corpus (RAVDESS layout)"
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    from bench_config import cpu_name

    from ser_lightning.inference.speech_activity import find_speech
    from ser_lightning.inference.timeline import TimelineSettings

    settings = TimelineSettings()
    rules = {
        "threshold": settings.threshold,
        "min_speech_ms": settings.min_speech_ms,
        "min_silence_ms": settings.min_silence_ms,
        "speech_pad_ms": settings.speech_pad_ms,
        "max_segment_s": settings.max_segment_s,
    }
    wave, clips = recording(args.data, args.seconds)
    load_before = os.getloadavg()

    def onnx_path() -> list[tuple[int, int]]:
        return find_speech(wave, RATE, **rules)

    def torch_path() -> list[tuple[int, int]]:
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad

        if not hasattr(torch_path, "model"):
            torch_path.model = load_silero_vad(onnx=False)
        found = get_speech_timestamps(
            torch.from_numpy(wave),
            torch_path.model,
            sampling_rate=RATE,
            threshold=rules["threshold"],
            min_speech_duration_ms=rules["min_speech_ms"],
            min_silence_duration_ms=rules["min_silence_ms"],
            speech_pad_ms=rules["speech_pad_ms"],
            max_speech_duration_s=rules["max_segment_s"],
        )
        return [(int(s["start"]), int(s["end"])) for s in found]

    paths = {"torch (silero-vad, TorchScript)": torch_path, "onnx (speech_activity)": onnx_path}
    first, times, segments = {}, {name: [] for name in paths}, {}
    for name, run in paths.items():  # the first call loads the model (and imports torch)
        start = time.perf_counter()
        segments[name] = run()
        first[name] = time.perf_counter() - start
        print(f"{name}: first call {first[name]:.2f} s, {len(segments[name])} segments", file=sys.stderr)
    for repeat in range(args.repeats):  # in turn, so that other load on the machine falls on both
        for name, run in paths.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        print(f"round {repeat + 1}/{args.repeats}", file=sys.stderr)
    load_after = os.getloadavg()

    (old, new) = (segments[name] for name in paths)
    same = len(old) == len(new) and all(
        abs(a - c) <= FRAME and abs(b - d) <= FRAME for (a, b), (c, d) in zip(old, new, strict=True)
    )
    seconds = len(wave) / RATE
    print(f"# Segmenting a {seconds:.0f} s recording: torch path vs ONNX segmenter ({cpu_name()})\n")
    print(
        f"{clips} demo clips of Actor_01 with pauses of 0.3-1.5 s ({seconds:.0f} s at 16 kHz), timeline "
        f"defaults (threshold {rules['threshold']}, min speech {rules['min_speech_ms']} ms, min silence "
        f"{rules['min_silence_ms']} ms, pad {rules['speech_pad_ms']} ms, max {rules['max_segment_s']:g} s); "
        f"{args.repeats} timed runs of each, in turn, after one untimed first call. Load average "
        f"{' / '.join(f'{x:.2f}' for x in load_before)} before, {' / '.join(f'{x:.2f}' for x in load_after)} after "
        f"(1 / 5 / 15 min, {os.cpu_count()} cores).\n"
    )
    print("| path | first call s | median s | fastest s | audio s per s (median) | segments |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in paths:
        median = statistics.median(times[name])
        print(
            f"| {name} | {first[name]:.3f} | {median:.3f} | {min(times[name]):.3f} | "
            f"{seconds / median:.0f} | {len(segments[name])} |"
        )
    ratio = statistics.median(times[next(iter(paths))]) / statistics.median(times[list(paths)[1]])
    print(
        f"\nspeed-up of the ONNX segmenter (median): {ratio:.2f}x; the same segments to within one "
        f"32 ms frame: {'yes' if same else 'NO'}"
    )


if __name__ == "__main__":
    main()
