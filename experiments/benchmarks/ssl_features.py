"""What `features=ssl` costs: the feature-cache build per encoder, the cache's size per clip, and
an epoch of the heads on the cached features.

    python experiments/benchmarks/ssl_features.py                      # base-size encoders, 240 clips
    python experiments/benchmarks/ssl_features.py --clips 64 --encoders wavlm_base_plus whisper_base
    python experiments/benchmarks/ssl_features.py --tiny --clips 16    # tiny encoders: seconds

Each encoder is its registry architecture (`ENCODERS`: same layers and sizes) with random
weights, written with `save_pretrained` into a folder and loaded from it as `features.encoder=
<folder>`, as a user's weights are: speed does not depend on the weights' values. `--tiny`
shrinks every family to 2 layers of 32 values, for a smoke run.

1. Extraction: the first `--clips` clips of the demo corpus (3 s at 16 kHz) go through
   `FeatureStore.ensure`, the cache build a training run does (its waveform cache built before,
   untimed), with pooling=mean and every layer kept. The device is the one `precompute` picks
   (CUDA when there is one). The cache's bytes per clip for each pooling follow from the
   features' shape, stored as float16.
2. Training: `ssl_head` and `ssl_head_emobox` on wavlm_base_plus features of the demo corpus
   (`--actors`), pooling none and mean, through the real `train` config (`ser_lightning.train.
   build`), as model_epoch_time.py does: the caches are built first (that build is reported
   too), the first epoch is a warm-up, and the table gives the mean of the epochs after it
   (training only). Timings are only as quiet as the machine: the load average is printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from bench_config import timing_config
from model_epoch_time import FULL_DEMO_ACTORS, train_epoch_seconds

from ser_lightning.data.feature_store import FeatureStore
from ser_lightning.features.ssl import SSLFeatures
from ser_lightning.features.ssl.features import POOLINGS
from ser_lightning.features.ssl.registry import ENCODERS, SAMPLE_RATE, family_classes
from ser_lightning.train import build

BASE_ENCODERS = ["wav2vec2_base", "hubert_base", "wavlm_base_plus", "data2vec_audio_base", "whisper_base"]
TRAINING_ENCODER = "wavlm_base_plus"
HEADS = ["ssl_head", "ssl_head_emobox"]
TRAINING_POOLINGS = ["none", "mean"]
CACHE_BYTES = 2  # float16

# Sizes of `--tiny`: every family at 2 layers of 32 values (Whisper keeps its 80 mel bins).
TINY_WAV2VEC2_STYLE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (32,) * 7,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}
TINY_WHISPER = {
    "d_model": 32,
    "encoder_layers": 2,
    "encoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_layers": 1,
    "decoder_attention_heads": 2,
    "decoder_ffn_dim": 64,
}


def encoder_folder(name: str, root: Path, tiny: bool) -> Path:
    """A save_pretrained folder of the named encoder's architecture (or its tiny version) with
    random weights. Whisper is saved whole, as its published folders are."""
    spec = ENCODERS[name]
    config_class, model_class = family_classes()[spec.family]
    sizes = dict(spec.config)
    if tiny:
        sizes.update(TINY_WHISPER if spec.family == "whisper" else TINY_WAV2VEC2_STYLE)
    folder = root / f"{'tiny_' if tiny else ''}{name}"
    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        model_class(config_class(**sizes)).eval().save_pretrained(folder)
    return folder


def demo_overrides(args: argparse.Namespace, work: Path) -> list[str]:
    return [
        "data=demo",
        f"data.root={work / f'demo_{args.actors}actors_{args.duration:g}s'}",
        f"data.demo.num_actors={args.actors}",
        f"data.demo.duration={args.duration}",
        f"data.duration={args.duration}",
        f"paths.cache_dir={work / 'cache'}",
        *args.overrides,
    ]


def extraction_rows(args: argparse.Namespace, work: Path, run_dir: str) -> tuple[list[dict], str]:
    """Clips/s of the feature-cache build of every encoder, and the cache's bytes per clip."""
    cfg = timing_config([*demo_overrides(args, work), "features=logmel"], run_dir)
    datamodule = build(cfg)["datamodule"]
    datamodule.prepare_data()
    datamodule.setup("fit")
    table = datamodule.manifest.table.iloc[: args.clips].reset_index(drop=True)
    root, audio, cache_dir = datamodule.source.root, datamodule.audio, cfg.paths.cache_dir
    # the subset's waveform cache, so that the timed builds compute features only
    FeatureStore(datamodule.features, audio, cache_dir).ensure(table, root)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for name in args.encoders:
        features = SSLFeatures(
            encoder=str(encoder_folder(name, work / "encoders", args.tiny)),
            pooling="mean",
            sample_rate=audio.sample_rate,
            chunk=args.chunk,
        )
        store = FeatureStore(features, audio, cache_dir)
        started = time.perf_counter()
        store.ensure(table, root)
        seconds = time.perf_counter() - started
        if store.events != ["reused waveforms", "built features"]:
            raise RuntimeError(f"{name}: the timed build did {store.events}, not the features alone")
        layers, hidden = len(features.layers), features.encoder.hidden_size
        frames = features.num_frames(audio.num_samples)
        rows.append(
            {
                "encoder": name,
                "params": sum(p.numel() for p in features.encoder.model.parameters()),
                "layers": layers,
                "hidden": hidden,
                "frames": frames,
                "seconds": seconds,
                "clips_per_s": len(table) / seconds,
                "bytes": {
                    "none": layers * hidden * frames * CACHE_BYTES,
                    "mean": layers * hidden * CACHE_BYTES,
                    "mean_std": layers * 2 * hidden * CACHE_BYTES,
                },
            }
        )
        print(f"{name}: {rows[-1]['clips_per_s']:.2f} clips/s", file=sys.stderr, flush=True)
        del features, store
    return rows, device


def training_rows(args: argparse.Namespace, work: Path, run_dir: str) -> list[dict]:
    """Seconds per training epoch of each head × pooling on cached features."""
    folder = encoder_folder(TRAINING_ENCODER, work / "encoders", args.tiny)
    rows = []
    for pooling in TRAINING_POOLINGS:
        for head in HEADS:
            overrides = [
                *demo_overrides(args, work),
                "features=ssl",
                f"features.encoder={folder}",
                f"features.pooling={pooling}",
                f"model={head}",
            ]
            cfg = timing_config(overrides, run_dir)
            pl.seed_everything(cfg.seed, workers=True, verbose=False)
            objects = build(cfg)
            datamodule, module = objects["datamodule"], objects["model"]
            started = time.perf_counter()
            datamodule.prepare_data()
            build_seconds = time.perf_counter() - started
            built = "built features" in datamodule.cache_events
            datamodule.setup("fit")
            measured = train_epoch_seconds(module, datamodule, args.epochs, run_dir)
            rows.append(
                {
                    "model": head,
                    "pooling": pooling,
                    "input": tuple(module.model.input_shape),
                    "params": sum(p.numel() for p in module.model.net.parameters()),
                    "clips": len(datamodule.manifest.table),
                    "train_clips": len(datamodule.manifest.indices["train"]),
                    "build_seconds": build_seconds if built else None,
                    "seconds": statistics.mean(measured),
                    "spread": (min(measured), max(measured)),
                }
            )
            print(
                f"{head} × pooling={pooling}: {rows[-1]['seconds']:.2f} s/epoch", file=sys.stderr, flush=True
            )
            del objects, datamodule, module
    return rows


def extraction_table(rows: list[dict], device: str) -> str:
    lines = [
        "| encoder | parameters | hidden states × size | frames / clip | device | clips / s | "
        + " | ".join(f"bytes / clip, pooling={p}" for p in POOLINGS)
        + " |",
        "| --- | ---: | --- | ---: | --- | ---: | " + " | ".join("---:" for _ in POOLINGS) + " |",
    ]
    for row in rows:
        lines.append(
            f"| `{row['encoder']}` | {row['params']:,} | {row['layers']} × {row['hidden']} | {row['frames']} | "
            f"{device} | {row['clips_per_s']:.2f} | "
            + " | ".join(f"{row['bytes'][p]:,}" for p in POOLINGS)
            + " |"
        )
    return "\n".join(lines)


def training_table(rows: list[dict]) -> str:
    lines = [
        "| model | pooling | input (C, F, T) | parameters | cache build, s (clips / s) | s / epoch (CPU) |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        low, high = row["spread"]
        spread = f" ({low:.2f}–{high:.2f})" if high - low >= 0.005 else ""
        built = (
            f"{row['build_seconds']:.1f} ({row['clips'] / row['build_seconds']:.2f})"
            if row["build_seconds"] is not None
            else "reused"
        )
        lines.append(
            f"| `{row['model']}` | {row['pooling']} | {row['input']} | {row['params']:,} | {built} | "
            f"{row['seconds']:.2f}{spread} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="+", default=BASE_ENCODERS, choices=sorted(ENCODERS))
    parser.add_argument("--clips", type=int, default=240, help="demo-corpus clips per extraction timing")
    parser.add_argument("--chunk", type=int, default=16, help="clips per encoder batch (features.chunk)")
    parser.add_argument(
        "--actors", type=int, default=6, help="demo corpus actors (even, 6..24; 60 clips each)"
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per demo clip")
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per head; the first is not counted (>= 2)"
    )
    parser.add_argument("--skip-training", action="store_true", help="time the extraction only")
    parser.add_argument("--tiny", action="store_true", help="2-layer, 32-wide encoders: a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--work-dir", default=None, help="encoders, corpus and caches (default: a temporary folder, removed)"
    )
    parser.add_argument("--output", default=None, help="also write the report to this markdown file")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args(argv)
    if args.actors % 2 or not 6 <= args.actors <= FULL_DEMO_ACTORS:
        parser.error(
            "--actors must be even and in 6..24: the speaker-independent split needs 3 actors per gender"
        )
    if not 1 <= args.clips <= 60 * args.actors:
        parser.error(f"--clips must be in 1..{60 * args.actors} (the demo corpus of --actors {args.actors})")
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch is a warm-up and is not counted")
    return args


def report(args: argparse.Namespace, work: Path, run_dir: str) -> str:
    load_before = os.getloadavg()
    extraction, device = extraction_rows(args, work, run_dir)
    training = [] if args.skip_training else training_rows(args, work, run_dir)
    load_after = os.getloadavg()
    sizes = "tiny (2 layers of 32 values)" if args.tiny else "the registry's sizes"
    parts = [
        f"Encoders of {sizes}, random weights loaded from save_pretrained folders; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads on {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.",
        f"Feature-cache build (`FeatureStore.ensure`, the waveforms cached before): {args.clips} demo clips of "
        f"{args.duration:g} s at {SAMPLE_RATE // 1000} kHz, every hidden state kept, pooling=mean, chunk "
        f"{args.chunk}. Cache per clip: float16, every hidden state kept "
        f"(`features.layers` keeps fewer: the size scales with their number).",
        extraction_table(extraction, device),
    ]
    if training:
        first = training[0]
        parts += [
            f"Heads on `{TRAINING_ENCODER}` features (every hidden state), demo corpus of {args.actors} actors "
            f"({first['clips']} clips of {args.duration:g} s; {first['train_clips']} in the train split), "
            f"epochs {args.epochs} (first not counted); the cache build is that of the whole corpus, "
            f"on {device}.",
            training_table(training),
        ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # keep the report readable
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ssl_features-") as scratch:
        work = Path(args.work_dir).resolve() if args.work_dir else Path(scratch)
        text = report(args, work, str(Path(scratch) / "run"))
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
