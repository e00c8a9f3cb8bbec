"""Peak memory of decoding a file for `predict`: block by block against the whole file at once.

`predict` decodes every file a second at a time (mixed to mono and resampled block by block,
`ser_lightning.inference.media.read_media`), so a long multichannel file costs about its mono
result, not its decoded channels. The whole-file way (`soundfile.read` of every channel, then
the mix and the resampling, as predict did before) is measured beside it on the same files:
8-channel 48 kHz FLACs of silence, a few hundred KB on disk each, the shape of the file that
once needed 92 MB per minute.

Peak memory is Python-level allocation (tracemalloc, which numpy reports to), measured in this
process; times are wall clock.

    python experiments/benchmarks/predict_memory.py [--seconds 60,300,600] [--sample-rate 16000]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser_lightning.inference.media import read_media


def write_silent_multichannel(path: Path, seconds: int, channels: int = 8, rate: int = 48000) -> Path:
    """Written block by block, so that making the file does not cost what decoding it would."""
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as handle:
        for _ in range(seconds):
            handle.write(np.zeros((rate, channels), dtype=np.float32))
    return path


def whole_file(path: Path, sample_rate: int) -> np.ndarray:
    """Every channel of the whole file in memory, then mono, then resampled."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    return soxr.resample(mono, rate, sample_rate).astype(np.float32)


def peak(decode: Callable[[Path, int], np.ndarray], path: Path, sample_rate: int) -> tuple[int, float, int]:
    """(peak bytes allocated while decoding, seconds, bytes of the result)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        wave = decode(path, sample_rate)
        seconds = time.perf_counter() - started
        return tracemalloc.get_traced_memory()[1], seconds, wave.nbytes
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", default="60,300,600", help="lengths of the files, comma-separated")
    parser.add_argument("--sample-rate", type=int, default=16000)
    args = parser.parse_args()
    lengths = [int(s) for s in args.seconds.split(",")]

    print("# Decoding memory of predict: block by block vs the whole file\n")
    print(
        f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}; "
        f"8-channel 48 kHz 16-bit FLAC of silence, decoded to mono {args.sample_rate} Hz.\n"
    )
    print(
        "| length | on disk | result (mono) | whole file: peak / time | block by block: peak / time | ratio |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for seconds in lengths:
            path = write_silent_multichannel(Path(folder) / f"silence_{seconds}s.flac", seconds)
            whole_peak, whole_s, result = peak(whole_file, path, args.sample_rate)
            block_peak, block_s, block_result = peak(read_media, path, args.sample_rate)
            assert block_result == result, "both ways must decode the same number of samples"
            print(
                f"| {seconds} s | {path.stat().st_size / 1e3:.0f} KB | {result / 1e6:.1f} MB "
                f"| {whole_peak / 1e6:.1f} MB / {whole_s:.2f} s | {block_peak / 1e6:.1f} MB / {block_s:.2f} s "
                f"| {whole_peak / block_peak:.0f}x |",
                flush=True,
            )
    print("\nPeak memory of block-by-block decoding stays within a small multiple of its mono result;")
    print("the whole-file way grows with channels × length at the file's own rate.")


if __name__ == "__main__":
    main()
