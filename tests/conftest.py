"""Shared fixtures: small corpora made by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# Torch on 2 cores: keep intra-op threads at the core count so tests do not oversubscribe.
os.environ.setdefault("OMP_NUM_THREADS", "2")

SMALL_DEMO = {"num_actors": 12, "duration": 1.5, "sample_rate": 16000, "seed": 0}


@pytest.fixture(scope="session")
def small_demo_root(tmp_path_factory) -> Path:
    """A 12-actor, 1.5 s synthetic corpus in RAVDESS layout (720 files), shared by the session."""
    from ser_lightning.data.demo import DemoCorpusSpec, ensure_demo_corpus

    root = tmp_path_factory.mktemp("corpora") / "demo_small"
    ensure_demo_corpus(root, DemoCorpusSpec(**SMALL_DEMO), progress=False)
    return root


def write_tone(
    path: Path,
    seconds: float = 0.5,
    sample_rate: int = 16000,
    freq: float = 220.0,
    channels: int = 1,
    subtype: str = "PCM_16",
    amplitude: float = 0.5,
) -> Path:
    """Write a sine tone as an audio file (the shape of real corpus files, tiny)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * freq * t)
    data = np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else wave
    sf.write(path, data, sample_rate, subtype=subtype)
    return path


@pytest.fixture
def tone_writer():
    return write_tone
