"""Shared fixtures: small corpora made by the tests themselves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from .helpers.audio import write_tone
from .helpers.corpora import SMALL_DEMO, tone_corpus

# Torch on 2 cores: keep intra-op threads at the core count so tests do not oversubscribe.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def small_demo_root(tmp_path_factory) -> Path:
    """A 12-actor, 1.5 s synthetic corpus in RAVDESS layout (720 files), shared by the session."""
    from ser_lightning.data.demo import DemoCorpusSpec, ensure_demo_corpus

    root = tmp_path_factory.mktemp("corpora") / "demo_small"
    ensure_demo_corpus(root, DemoCorpusSpec(**SMALL_DEMO), progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_served_model(small_demo_root, tmp_path_factory):
    """A few batches of a small ACNT on the small demo corpus, trained once for the serving tests."""
    from .helpers.serving import train_tiny_model

    return train_tiny_model(
        small_demo_root, tmp_path_factory.mktemp("served_model"), tmp_path_factory.mktemp("served_cache")
    )


@pytest.fixture
def tone_writer():
    return write_tone


@pytest.fixture(scope="session")
def tone_root(tmp_path_factory) -> Path:
    """The 192-take tone corpus of `tone_corpus`, shared by the session."""
    return tone_corpus(tmp_path_factory.mktemp("tones") / "corpus")


@pytest.fixture
def one_torch_thread():
    """One torch thread for the test: tiny models run fastest so, and the entry-point runs of the
    resume tests use one (OMP_NUM_THREADS=1), so their results match the in-process runs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
