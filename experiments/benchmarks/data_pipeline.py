"""Data work per training epoch: ser_lightning's cached pipeline against a seed-style Dataset.

The seed-style baseline is what the older projects did: decode the file and compute a librosa
log-mel spectrogram (and, with augmentation, augment the waveform first) inside
`Dataset.__getitem__`, every epoch. Ours decodes once into the waveform cache, computes
features once into the feature cache, and per epoch only reads memory-mapped rows (or, with
waveform augmentation, augments cached waveforms in the workers and computes log-mel per
batch with torchaudio).

Both sides use the same clips, the same DataLoader workers and batch size, and are timed side
by side in one run. With augmentation the baseline applies the seed projects' transforms one
after another (gain, noise, ±2 semitone pitch shift, 0.9-1.1 time stretch, shift, polarity,
p 0.5 each, audiomentations); ours runs the project's `augmentation=waveform` preset, which has
the same transforms and ranges (plus a random crop/pad at p 0.3) but makes pitch shift and time
stretch in one stretcher pass (`PitchTimeStretch`). A third row trains from offline copies
(`augmentation.offline_copies=2`): the copies are made once (timed separately) and every epoch
then reads clean clips and copies from the feature cache.

    python experiments/benchmarks/data_pipeline.py [--actors 24] [--workers 2] [--epochs 2] [--offline-copies 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import torch
from audiomentations import (
    AddGaussianNoise,
    Compose,
    Gain,
    PitchShift,
    PolarityInversion,
    Shift,
    TimeStretch,
)
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.augment.waveform import build_waveform_augmentation
from ser_lightning.data.datamodule import build_data_module
from ser_lightning.data.offline_copies import OfflineCopies
from ser_lightning.demo_corpus import DemoCorpusSpec, ensure_demo_corpus
from ser_lightning.features import LogMel
from ser_lightning.utils.config import CONFIG_DIR


def seed_style_augmentation(sample_rate: int) -> Compose:
    """The waveform augmentations the seed projects applied per item."""
    return Compose(
        [
            Gain(min_gain_db=-6, max_gain_db=6, p=0.5),
            AddGaussianNoise(min_amplitude=0.001, max_amplitude=0.015, p=0.5),
            PitchShift(min_semitones=-2, max_semitones=2, p=0.5),
            TimeStretch(min_rate=0.9, max_rate=1.1, leave_length_unchanged=True, p=0.5),
            Shift(min_shift=-0.2, max_shift=0.2, shift_unit="seconds", p=0.5),
            PolarityInversion(p=0.5),
        ]
    )


class SeedStyleDataset(Dataset):
    """Decode + (augment) + librosa log-mel in __getitem__, every epoch (the baseline)."""

    def __init__(self, paths, labels, audio: AudioSettings, features: LogMel, augment: Compose | None):
        self.paths, self.labels, self.audio, self.features, self.augment = (
            paths,
            labels,
            audio,
            features,
            augment,
        )

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        wave, _ = librosa.load(self.paths[i], sr=self.audio.sample_rate, duration=self.audio.duration)
        wave = librosa.util.fix_length(wave, size=self.audio.num_samples)
        if self.augment is not None:
            wave = self.augment(samples=wave, sample_rate=self.audio.sample_rate)
        mel = librosa.feature.melspectrogram(
            y=wave,
            sr=self.audio.sample_rate,
            n_fft=self.features.n_fft,
            hop_length=self.features.hop_length,
            n_mels=self.features.n_mels,
            htk=True,
            norm=None,
        )
        return torch.from_numpy(librosa.power_to_db(mel)[None].astype(np.float32)), self.labels[i]


def time_epoch(loader, on_batch=None) -> float:
    started = time.perf_counter()
    for batch in loader:
        if on_batch is not None:
            on_batch(batch)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--actors", type=int, default=24, help="demo corpus actors (24 = 1440 clips)")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, both sides")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs timed per side (the first warms workers)"
    )
    parser.add_argument("--offline-copies", type=int, default=2, help="K of the offline-copies row")
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="corpus + cache folder (default: a temp dir)"
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() // 2))

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ser_bench_"))
    corpus = ensure_demo_corpus(
        work / "demo", DemoCorpusSpec(num_actors=args.actors, duration=args.duration), progress=False
    )
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    # the project's features=logmel settings (conf/features/logmel.yaml), on both sides
    logmel = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "features" / "logmel.yaml"))
    logmel = {k: v for k, v in logmel.items() if k not in ("_target_", "sample_rate")}
    features = LogMel(sample_rate=16000, **logmel)

    def make_dm(**settings):
        return build_data_module(
            features=features,
            root=str(corpus),
            duration=args.duration,
            cache_dir=str(cache),
            split="random",
            batch_size=args.batch_size,
            **{"num_workers": args.workers, **settings},
        )

    started = time.perf_counter()
    dm = make_dm()
    dm.prepare_data()
    cold_build = time.perf_counter() - started
    dm.setup("fit")
    started = time.perf_counter()
    warm = make_dm()
    warm.prepare_data()
    warm.setup("fit")
    warm_setup = time.perf_counter() - started

    train_rows = dm.manifest.indices["train"]
    paths = dm.manifest.table["path"].to_numpy()[train_rows].tolist()
    labels = dm.manifest.labels[train_rows].tolist()
    augment = seed_style_augmentation(16000)

    def loader(dataset):
        return DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
        )

    preset = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "augmentation" / "waveform.yaml"))[
        "augmentation"
    ]
    ours_augment = build_waveform_augmentation(preset["waveform"], 16000)

    results = {}
    for name, augmented in (("no augmentation", False), ("waveform augmentation", True)):
        print(f"timing: {name} ...", flush=True)
        baseline = loader(SeedStyleDataset(paths, labels, dm.audio, features, augment if augmented else None))
        if augmented:
            ours_dm = make_dm(waveform_augmentation=ours_augment)  # trains on waveforms
            ours_dm.setup("fit")
            ours = ours_dm.train_dataloader()
            on_batch = lambda b: features.extract(b["waveform"])  # noqa: E731 - per-batch features, as training does
        else:
            ours = dm.train_dataloader()
            on_batch = None
        base_times = [time_epoch(baseline) for _ in range(args.epochs)]
        ours_times = [time_epoch(ours, on_batch) for _ in range(args.epochs)]
        results[name] = (min(base_times), min(ours_times), len(ours.dataset))
        del baseline, ours

    print(f"timing: offline copies (K={args.offline_copies}) ...", flush=True)
    offline_dm = make_dm(
        offline_copies=OfflineCopies(
            ours_augment,
            copies=args.offline_copies,
            seed=0,
            description=preset["waveform"],
            workers=args.workers,
        )
    )
    started = time.perf_counter()
    offline_dm.setup("fit")  # makes the copies and caches their features (once)
    offline_build = time.perf_counter() - started
    offline = offline_dm.train_dataloader()
    offline_time = min(time_epoch(offline) for _ in range(args.epochs))
    offline_clips = len(offline.dataset)

    # What the default data.num_workers=auto gives without on-the-fly augmentation (0 workers):
    # batches read in the training process itself, where their cost is on the critical path of
    # every step (no worker processes to hide it).
    main_dm = make_dm(num_workers="auto")
    assert main_dm.num_workers == 0
    main_dm.setup("fit")
    main_loader = main_dm.train_dataloader()
    main_time = min(time_epoch(main_loader) for _ in range(max(args.epochs, 5)))

    print(
        f"\n## Data work per training epoch ({len(paths)} training clips of {args.duration} s, "
        f"{args.workers} workers, batch {args.batch_size})\n"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}\n"
    )
    print(
        f"cold cache build (decode + log-mel, {len(dm.manifest.table)} clips): {cold_build:.1f} s; warm setup: {warm_setup:.2f} s\n"
    )
    print("| pipeline | seed-style s/epoch | ser_lightning s/epoch | ratio |")
    print("|---|---|---|---|")
    for name, (base, ours, _) in results.items():
        print(f"| {name} | {base:.2f} | {ours:.3f} | {base / ours:.1f}x |")
    base_aug = results["waveform augmentation"][0]
    per_clip_ratio = (base_aug / len(paths)) / (offline_time / offline_clips)
    print(
        f"| offline copies, K={args.offline_copies} ({offline_clips} clips per epoch: clean + copies) | "
        f"{base_aug:.2f} (for {len(paths)}) | {offline_time:.3f} | {per_clip_ratio:.1f}x per clip |"
    )
    print(
        f"\noffline copies: made once in {offline_build:.1f} s ({args.offline_copies} x {len(paths)} clips: "
        f"augment + log-mel + write), then read from the cache every epoch"
    )
    print(
        f"\nin the training process (data.num_workers=auto: 0 without on-the-fly augmentation, the default): {main_time * 1000:.1f} ms per epoch, "
        f"{main_time / len(main_loader) * 1000:.3f} ms per batch of {args.batch_size}"
    )
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
