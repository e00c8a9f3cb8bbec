"""A separate process that builds a data module's caches, for the interruption tests.

`python -m tests.helpers.cache_build_child ROOT CACHE [--decode-delay S] [--extract-delay S]` builds the
waveform and feature caches of the corpus at ROOT in CACHE and prints one JSON line: what it
did and a SHA-256 of the bytes of each array. The delays slow decoding (per file) and feature extraction
(per chunk) so that a test can kill the process while a build is under way.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np

import ser_lightning.data.feature_store as feature_store_module
from ser_lightning.data.datamodule import SERDataModule, build_data_module
from ser_lightning.features import LogMel


def make_datamodule(root: str, cache: str) -> SERDataModule:
    return build_data_module(
        features=LogMel(sample_rate=16000, n_mels=16, n_fft=256, hop_length=128),
        root=root,
        duration=0.3,
        cache_dir=cache,
        batch_size=8,
        decode_workers=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("cache")
    parser.add_argument("--decode-delay", type=float, default=0.0)
    parser.add_argument("--extract-delay", type=float, default=0.0)
    args = parser.parse_args()

    if args.decode_delay:
        decode = feature_store_module.load_waveform

        def slow_decode(*a, **k):
            time.sleep(args.decode_delay)
            return decode(*a, **k)

        feature_store_module.load_waveform = slow_decode
    dm = make_datamodule(args.root, args.cache)
    if args.extract_delay:
        extract = dm.features.extract

        def slow_extract(batch):
            time.sleep(args.extract_delay)
            return extract(batch)

        dm.features.extract = slow_extract
    dm.prepare_data()
    dm.setup("fit")
    print(
        json.dumps(
            {
                "events": dm.cache_events,
                "rows": len(dm.manifest.table),
                "waveforms_sha256": hashlib.sha256(
                    np.ascontiguousarray(dm.arrays.waveforms).tobytes()
                ).hexdigest(),
                "features_sha256": hashlib.sha256(
                    np.ascontiguousarray(dm.arrays.features).tobytes()
                ).hexdigest(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
