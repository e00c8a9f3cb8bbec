"""Whole clips at MSP-Podcast's scale: whole-length cache build, peak memory and padding per epoch.

    python experiments/benchmarks/variable_length_scale.py --scale 0.01            # 1,500 clips, ~2.3 h
    python experiments/benchmarks/variable_length_scale.py --scale 0.002 --out experiments/benchmarks/results/x.md

A synthetic corpus shaped like MSP-Podcast: 150,000 utterances at `--scale` 1, of 2.75 to 11 s
(a Beta(2, 3.95) spread over that range, mean 5.52 s, so 150,000 clips make ~230 h), 16 kHz
PCM16 WAVs of a tone in noise, written into `--work-dir` (26 GB at scale 1: run it small).

Measured, for `data.duration=null` (ser_lightning.data.variable_length):

- cache build: the whole-length waveform and log-mel caches built from the WAVs (the files are
  read once beforehand, so they come from the OS page cache), as audio hours and clips per
  second, and the caches' size on disk;
- peak memory: this process's peak resident set before and after the build (`ru_maxrss`; pages
  of the memory-mapped caches that were touched count in it);
- padding share per epoch: padded frames over all frames of an epoch's batches, for the train
  order of a plain shuffle (`EpochSeededShuffle`), of length bucketing (`LengthBucketedShuffle`),
  and of fixed-length clips padded to the longest clip (what `data.duration=11` would do). These
  need only the lengths, so they are computed at full scale (150,000 clips) whatever `--scale`.

Progress goes to stderr, the markdown report to stdout (and `--out`).
"""

from __future__ import annotations

import argparse
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ser_lightning.audio_settings import AudioSettings  # noqa: E402
from ser_lightning.data.bucketing import LengthBucketedShuffle, padding_share  # noqa: E402
from ser_lightning.data.feature_store import FeatureStore  # noqa: E402
from ser_lightning.data.sampling import EpochSeededShuffle  # noqa: E402
from ser_lightning.data.variable_length import WholeClipStore  # noqa: E402
from ser_lightning.features.logmel import LogMel  # noqa: E402

FULL_CLIPS = 150_000
SHORTEST, LONGEST = 2.75, 11.0
SAMPLE_RATE = 16_000
HOP = 160  # 10 ms frames


def durations(clips: int, seed: int = 0) -> np.ndarray:
    """Draw MSP-Podcast-shaped clip lengths in seconds (2.75-11 s, mean ~5.5 s)."""
    return SHORTEST + (LONGEST - SHORTEST) * np.random.default_rng(seed).beta(2.0, 3.95, clips)


def write_corpus(folder: Path, seconds: np.ndarray) -> list[str]:
    """Write one WAV per length: a tone in noise, PCM16 at 16 kHz."""
    rng = np.random.default_rng(1)
    paths = []
    for i, length in enumerate(seconds):
        n = int(round(length * SAMPLE_RATE))
        t = np.arange(n) / SAMPLE_RATE
        wave = 0.3 * np.sin(2 * np.pi * (120 + i % 200) * t) + 0.05 * rng.standard_normal(n)
        path = folder / f"spk{i % 500:03d}" / f"utt{i:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        paths.append(str(path))
        if i % 1000 == 0:
            print(f"wrote {i}/{len(seconds)} files", file=sys.stderr)
    return paths


def peak_mb() -> float:
    """This process's peak resident set in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def padding_rows(batch_size: int, epochs: int) -> list[tuple[str, float]]:
    """Padding share per epoch of each train order, at full scale (frames of 10 ms)."""
    frames = (durations(FULL_CLIPS) * SAMPLE_RATE).astype(np.int64) // HOP + 1
    rows = []
    for name, make in (
        ("plain shuffle (EpochSeededShuffle)", lambda e: EpochSeededShuffle(len(frames), 0, lambda: e)),
        (
            "length bucketing (LengthBucketedShuffle)",
            lambda e: LengthBucketedShuffle(frames, batch_size, 0, lambda: e),
        ),
    ):
        shares = [padding_share(frames, list(make(epoch)), batch_size) for epoch in range(epochs)]
        rows.append((name, float(np.mean(shares))))
    rows.append(
        (f"fixed length, padded to the longest clip ({LONGEST:g} s)", 1 - frames.mean() / frames.max())
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", type=float, default=0.01, help="share of MSP-Podcast's 150,000 clips to write"
    )
    parser.add_argument("--work-dir", default="/tmp/variable_length_scale", help="corpus and cache folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="epochs whose padding share is averaged")
    parser.add_argument("--decode-workers", type=int, default=None, help="decoding threads (None: 8)")
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--keep", action="store_true", help="keep the corpus and caches")
    parser.add_argument("--out", default=None, help="also write the report here")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    clips = max(8, int(round(FULL_CLIPS * args.scale)))
    seconds = durations(clips)
    started = time.perf_counter()
    paths = write_corpus(work / "corpus", seconds)
    written_s = time.perf_counter() - started
    for path in paths:  # into the page cache, as right after writing
        Path(path).read_bytes()
    table = pd.DataFrame({"path": paths})
    store = FeatureStore(
        LogMel(hop_length=HOP, n_fft=400),
        AudioSettings(duration=None),
        str(work / "cache"),
        decode_workers=args.decode_workers,
    )
    before = peak_mb()
    started = time.perf_counter()
    WholeClipStore(store).ensure(table)
    build_s = time.perf_counter() - started
    after = peak_mb()
    cache_mb = sum(p.stat().st_size for p in (work / "cache").glob("*.npy")) / 1e6
    hours = seconds.sum() / 3600
    padding = padding_rows(args.batch_size, args.epochs)
    lines = [
        "# Whole clips at MSP-Podcast's scale",
        "",
        f"`python experiments/benchmarks/variable_length_scale.py --scale {args.scale:g}` on {platform.node()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch threads {torch.get_num_threads()}, "
        f"decoding threads {args.decode_workers or 8}, CPU only.",
        "",
        f"Corpus: {clips:,} clips, {hours:.2f} h ({seconds.min():.2f}-{seconds.max():.2f} s, mean "
        f"{seconds.mean():.2f} s), written in {written_s:.1f} s. Log-mel 64 x 10 ms frames.",
        "",
        "| cache build (whole-length waveforms + log-mel) | value |",
        "| --- | --- |",
        f"| seconds | {build_s:.1f} |",
        f"| clips per second | {clips / build_s:.1f} |",
        f"| audio hours per minute | {hours / build_s * 60:.2f} |",
        f"| cache size on disk | {cache_mb:.0f} MB |",
        f"| peak resident set before / after the build | {before:.0f} / {after:.0f} MB |",
        f"| at scale 1, by linear extrapolation | {build_s / args.scale / 3600:.1f} h, "
        f"{cache_mb / args.scale / 1e3:.0f} GB |",
        "",
        f"| padding share per epoch, 150,000 clips, batch {args.batch_size}, mean of {args.epochs} epochs | share |",
        "| --- | --- |",
        *[f"| {name} | {share:.1%} |" for name, share in padding],
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
