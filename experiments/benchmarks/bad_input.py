"""What robustness costs: memory of a long recording, and the one-time audio check of a corpus.

- Peak memory (tracemalloc) and time to turn a 10-minute 48 kHz recording into a 3 s clip:
  `load_waveform` (reads only the crop) against decoding the whole file.
- Files per second of the audio check that reads every frame of every labelled file once
  (cold), and of the same check answered from its cache (warm).

    python experiments/benchmarks/bad_input.py [--files 720] [--seconds 3.0] [--rate 48000]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.data.audio import load_waveform
from ser_lightning.data.cache import ArrayCache
from ser_lightning.data.corpora import RavdessCorpus
from ser_lightning.data.quality import screen_audio
from ser_lightning.decoding import read_audio


def peak_memory(fn) -> tuple[float, float]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 1e6, time.perf_counter() - started
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=720, help="files in the corpus for the audio check")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each corpus file")
    parser.add_argument("--rate", type=int, default=48000, help="sample rate of the files (RAVDESS: 48000)")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        second = (0.5 * np.sin(2 * np.pi * 220 * np.arange(args.rate) / args.rate)).astype(np.float32)
        long_file = tmp / "ten_minutes.wav"
        sf.write(long_file, np.tile(second, 600), args.rate, subtype="PCM_16")
        settings = AudioSettings(sample_rate=16000, duration=3.0)
        crop_mb, crop_s = peak_memory(lambda: load_waveform(long_file, settings))
        full_mb, full_s = peak_memory(lambda: read_audio(long_file, 16000))
        print(
            f"10-minute {args.rate} Hz file to a 3 s clip: {crop_mb:.1f} MB peak, {crop_s * 1000:.0f} ms "
            f"(whole-file decode: {full_mb:.0f} MB peak, {full_s * 1000:.0f} ms)"
        )

        root = tmp / "corpus"
        wave = np.tile(second, int(np.ceil(args.seconds)))[: int(args.seconds * args.rate)]
        for i in range(min(args.files, 768)):  # 24 actors x 8 emotions x 2 statements x 2 repetitions
            actor, emotion, statement, repetition = (
                i % 24 + 1,
                i // 24 % 8 + 1,
                i // 192 % 2 + 1,
                i // 384 + 1,
            )
            path = (
                root
                / f"Actor_{actor:02d}"
                / f"03-01-{emotion:02d}-01-{statement:02d}-{repetition:02d}-{actor:02d}.wav"
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave, args.rate, subtype="PCM_16")
        scan = RavdessCorpus(str(root)).scan()
        cache = ArrayCache(tmp / "cache")
        started = time.perf_counter()
        screen_audio(scan, cache)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        screen_audio(scan, cache)
        warm = time.perf_counter() - started
        n = len(scan.table)
        print(
            f"audio check of {n} files of {args.seconds:.1f} s at {args.rate} Hz: cold {cold:.2f} s "
            f"({n / cold:.0f} files/s), warm {warm * 1000:.0f} ms (from the cache)"
        )


if __name__ == "__main__":
    main()
