"""Corpora the tests make or copy, each with the Hydra overrides that point a run at it."""

from __future__ import annotations

import shutil
from pathlib import Path

from .audio import write_tone

# The spec of the session's small synthetic corpus (the small_demo_root fixture).
SMALL_DEMO = {"num_actors": 12, "duration": 1.5, "sample_rate": 16000, "seed": 0}


def small_demo_overrides(root: Path) -> list[str]:
    """Point data=demo at the session's small corpus (same spec, so it is not regenerated)."""
    return [
        "data=demo",
        f"data.root={root}",
        f"data.demo.num_actors={SMALL_DEMO['num_actors']}",
        f"data.demo.duration={SMALL_DEMO['duration']}",
        f"data.duration={SMALL_DEMO['duration']}",
    ]


def tone_corpus(root: Path, seconds: float = 0.3) -> Path:
    """192 takes: 6 actors (3 male, 3 female), 8 emotions, 2 statements, 2 repetitions.

    The pitch follows the emotion, so a model can learn it; the speaker shifts it a little.
    """
    for actor in range(1, 7):
        for emotion in range(1, 9):
            for statement in (1, 2):
                for repetition in (1, 2):
                    name = f"Actor_{actor:02d}/03-01-{emotion:02d}-01-{statement:02d}-{repetition:02d}-{actor:02d}.wav"
                    write_tone(root / name, seconds=seconds, freq=100.0 * emotion + 7 * actor + statement)
    return root


def ragged_tone_corpus(root: Path, shortest: float = 0.2, longest: float = 1.2) -> Path:
    """The tone corpus's 192 takes with lengths spread from `shortest` to `longest` seconds.

    Lengths cycle through the takes, so every emotion and actor has short and long clips;
    some files are written at 22.05 kHz, so resampling changes their lengths too.
    """
    spread = [shortest + (longest - shortest) * k / 11 for k in range(12)]
    take = 0
    for actor in range(1, 7):
        for emotion in range(1, 9):
            for statement in (1, 2):
                for repetition in (1, 2):
                    name = f"Actor_{actor:02d}/03-01-{emotion:02d}-01-{statement:02d}-{repetition:02d}-{actor:02d}.wav"
                    freq = 100.0 * emotion + 7 * actor + statement
                    rate = 22050 if take % 5 == 0 else 16000
                    write_tone(root / name, seconds=spread[take % 12], sample_rate=rate, freq=freq)
                    take += 1
    return root


# Hydra overrides for a training run on the tone corpus that takes seconds on a CPU.
TINY_RUN = [
    "data=ravdess",
    "data.duration=0.3",
    "data.batch_size=16",
    "features.n_mels=16",
    "features.n_fft=256",
    "features.hop_length=128",
    "model.net.cnn_channels=[4,8]",
    "model.net.transformer_dim=16",
    "model.net.num_heads=2",
    "model.net.num_layers=1",
    "model.net.ff_dim=16",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
]


def copy_subset(source: Path, target: Path, actors: int = 6) -> Path:
    """Copy one clip per emotion (normal intensity, first statement and repetition) of the
    first `actors` actors: 8 files per actor, both genders, enough for the actor split.

    For runs whose features are slow to compute on the whole corpus."""
    for actor in range(1, actors + 1):
        for path in sorted((source / f"Actor_{actor:02d}").glob(f"03-01-??-01-01-01-{actor:02d}.wav")):
            destination = target / path.parent.name / path.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
    return target


def subset_overrides(root: Path, duration: float) -> list[str]:
    """Point the data config at a subset (a plain RAVDESS folder: nothing is generated there)."""
    return ["data=ravdess", f"data.root={root}", f"data.duration={duration}"]
