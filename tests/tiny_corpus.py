"""A tiny corpus in RAVDESS layout made of tones, for tests that need real files fast."""

from __future__ import annotations

from pathlib import Path

from .conftest import write_tone


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
