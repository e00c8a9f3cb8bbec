"""Whole-clip models in the service: padded batches across requests vs one clip per model call.

A model trained on whole clips (`data.duration=null`) scores each upload whole. The service's
batcher can join concurrent uploads into one padded batch (`Predictor.whole_clip_probabilities`:
features extracted clip by clip, the network run once with each clip's frame count), or score
each upload on its own. This times both on the same clips, with the default ACNT untrained (the
cost depends on the architecture, not on the weights), on the CPU, and checks that both give the
same probabilities.

    python experiments/benchmarks/whole_clip_serving.py                 # 32 clips of 1-6 s, 2 threads
    python experiments/benchmarks/whole_clip_serving.py --clips 64 --shortest 0.5 --longest 11
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--shortest", type=float, default=1.0)
    parser.add_argument("--longest", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    from bench_config import cpu_name, timing_config

    from ser_lightning.audio_settings import AudioSettings
    from ser_lightning.inference.predictor import Predictor
    from ser_lightning.labels import EMOTIONS
    from ser_lightning.model import SERModel
    from ser_lightning.utils.config import to_plain

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = timing_config(["data.duration=null"], run_dir)
    model = SERModel(
        net=to_plain(cfg.model.net),
        features=to_plain(cfg.features),
        audio=AudioSettings(duration=None).to_dict(),
        labels=list(EMOTIONS),
    ).eval()
    rate = model.audio.sample_rate
    rng = np.random.default_rng(0)
    seconds = rng.uniform(args.shortest, args.longest, args.clips)
    clips = [(rng.standard_normal(int(s * rate)) * 0.1).astype(np.float32) for s in seconds]
    batched = Predictor(model, device="cpu", batch_size=args.clips)
    single = Predictor(model, device="cpu", batch_size=1)  # sorted, one clip per model call

    def timed(predictor: Predictor) -> tuple[float, np.ndarray]:
        predictor.whole_clip_probabilities(clips[:2])  # warm-up
        times, out = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = predictor.whole_clip_probabilities(clips)
            times.append(time.perf_counter() - start)
        return statistics.median(times), out

    one_s, one = timed(single)
    padded_s, padded = timed(batched)
    audio_s = float(seconds.sum())
    print(f"# whole-clip scoring: padded batch vs one clip per call ({cpu_name()}, {args.threads} threads)\n")
    print(
        f"{args.clips} noise clips of {args.shortest:g}-{args.longest:g} s ({audio_s:.0f} s of audio), "
        f"default ACNT (untrained), log-mel, median of {args.repeats}\n"
    )
    print("| scoring | seconds | audio s per s |")
    print("| --- | ---: | ---: |")
    print(f"| one clip per model call | {one_s:.2f} | {audio_s / one_s:.0f} |")
    print(f"| one padded batch | {padded_s:.2f} | {audio_s / padded_s:.0f} |")
    print(
        f"\nspeed-up {one_s / padded_s:.2f}x; max |probability difference| {np.abs(one - padded).max():.1e}"
    )


if __name__ == "__main__":
    main()
