"""A separate process that computes handcrafted68 features, for the numba cache tests.

`python -m tests.helpers.numba_cache_child OUT.npy` fills a feature cache of 16 one-second
clips with a pool of 2 worker processes, computes the same clips again in this process, and
saves both, stacked, to OUT.npy. `--plain` computes one clip with `handcrafted_frames` only,
skipping the cache's probe and lock, as code outside the extractor would: what a corrupted
cache does to an unprotected process. NUMBA_CACHE_DIR comes from the caller.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch

from ser_lightning.features import Handcrafted68
from ser_lightning.features.handcrafted import HandcraftedSettings, handcrafted_frames

SAMPLE_RATE = 16000  # not librosa's 22.05 kHz, so the resampling path runs too
CLIPS = 16


def clips() -> np.ndarray:
    rng = np.random.default_rng(7)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tones = np.sin(2 * np.pi * rng.uniform(150, 600, size=(CLIPS, 1)) * t)
    return (0.5 * tones + 0.05 * rng.standard_normal((CLIPS, SAMPLE_RATE))).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    waves = clips()
    if args.plain:
        frames = handcrafted_frames(waves[0], HandcraftedSettings(SAMPLE_RATE, 22050, 2048, 512))
        np.save(args.out, frames)
        return
    features = Handcrafted68(sample_rate=SAMPLE_RATE, num_workers=2, normalization="none")
    pooled = np.zeros((CLIPS, *features.output_shape(SAMPLE_RATE)), dtype=np.float32)
    features.precompute(waves, pooled, chunk=CLIPS // 2)  # two chunks: both workers compute
    in_process = features.extract(torch.from_numpy(waves)).numpy()
    np.save(args.out, np.stack([pooled, in_process]))


if __name__ == "__main__":
    main()
