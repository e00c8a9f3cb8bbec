"""Shared fixtures: small corpora made by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .helpers.audio import write_tone
from .helpers.corpora import SMALL_DEMO

# Torch on 2 cores: keep intra-op threads at the core count so tests do not oversubscribe.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def small_demo_root(tmp_path_factory) -> Path:
    """A 12-actor, 1.5 s synthetic corpus in RAVDESS layout (720 files), shared by the session."""
    from ser_lightning.data.demo import DemoCorpusSpec, ensure_demo_corpus

    root = tmp_path_factory.mktemp("corpora") / "demo_small"
    ensure_demo_corpus(root, DemoCorpusSpec(**SMALL_DEMO), progress=False)
    return root


@pytest.fixture
def tone_writer():
    return write_tone
