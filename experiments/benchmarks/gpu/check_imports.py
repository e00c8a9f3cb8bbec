"""Fast fail before any measurement: import what the GPU runs need, print each failure.

    python3 experiments/benchmarks/gpu/check_imports.py [--no-gpu]

One line per module: its version and where it was loaded from (the carried wheels land in
/tmp/site, the machine's own packages elsewhere), then the project's entry points, then the
GPU itself. Exits 1 if anything failed, so run.sh stops before spending device time.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

# third-party modules of the training runs, the recipes' features and augmentation, the
# baseline loop and the report; the carried wheels first
MODULES = [
    "hydra",
    "omegaconf",
    "antlr4",
    "librosa",
    "audioread",
    "pooch",
    "platformdirs",
    "decorator",
    "soundfile",
    "cffi",
    "soxr",
    "audiomentations",
    "numpy_minmax",
    "numpy_rms",
    "python_stretch",
    "torch",
    "torchaudio",
    "pytorch_lightning",
    "torchmetrics",
    "numpy",
    "numba",
    "scipy",
    "sklearn",
    "pandas",
    "matplotlib",
    "rich",
    "filelock",
    "yaml",
    "joblib",
    "lazy_loader",
    "msgpack",
    "tensorboard",
]
# the project's modules the runs import, at module level and lazily
PROJECT = [
    "ser_lightning.train",
    "ser_lightning.report",
    "ser_lightning.demo_corpus",
    "ser_lightning.features.handcrafted",
    "ser_lightning.augment.waveform",
    "ser_lightning.data.offline_copies",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-gpu", action="store_true", help="do not require a CUDA device")
    args = parser.parse_args()
    started = time.perf_counter()
    failed = []
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    for name in MODULES + PROJECT:
        try:
            module = importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - every failure is reported, none stops the check
            failed.append(name)
            print(f"FAIL  {name}: {type(err).__name__}: {err}")
            continue
        if name in PROJECT:
            print(f"ok    {name}")
        else:
            version = getattr(module, "__version__", "?")
            print(f"ok    {name} {version}  ({getattr(module, '__file__', '?')})")
    try:
        import soundfile

        print(f"ok    libsndfile {soundfile.__libsndfile_version__}")
        import torch

        print(f"cuda  available={torch.cuda.is_available()} torch.version.cuda={torch.version.cuda}")
        if torch.cuda.is_available():
            print(f"cuda  device 0: {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")
            torch.ones(1, device="cuda").add_(1)
        elif not args.no_gpu:
            failed.append("cuda")
            print("FAIL  cuda: no CUDA device")
    except Exception:  # noqa: BLE001
        failed.append("runtime")
        traceback.print_exc()
    print(f"imports checked in {time.perf_counter() - started:.1f} s; failed: {', '.join(failed) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
