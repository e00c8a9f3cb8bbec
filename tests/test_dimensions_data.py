"""Ratings from the corpus files to the batch: IEMOCAP and MSP-Podcast fixture trees, the demo corpus, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ser_lightning.data.datamodule import build_data_module
from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.features import LogMel
from ser_lightning.utils.errors import InvalidSetting

from .helpers.audio import write_tone
from .test_corpus_iemocap import ANNOTATORS
from .test_corpus_iemocap import HEADER as IEMOCAP_HEADER
from .test_corpus_msp_podcast import CLIP_SECONDS, csv_line, msp_tree


def batches_of(dm, split: str = "train") -> list[dict]:
    """Every batch of a split as the trainer hands it to the module (after the transfer hook)."""
    loader = {"train": dm.train_dataloader, "val": dm.val_dataloader, "test": dm.test_dataloader}[split]()
    return [dm.on_after_batch_transfer(batch, 0) for batch in loader]


def ratings_by_file(dm, split: str) -> dict[str, list[float]]:
    """Each clip's `batch["dimensions"]`, keyed by its file name."""
    table = dm.manifest.table
    found = {}
    for batch in batches_of(dm, split):
        for row, values in zip(batch["row"].tolist(), batch["dimensions"].tolist(), strict=True):
            found[Path(table["path"][row]).name] = values
    return found


def test_msp_podcast_ratings_reach_the_batch_normalised_from_1_to_7(tmp_path):
    # (name, code, speaker, gender, partition, act, val, dom): ratings on MSP-Podcast's 1-7 scale
    rows = [
        ("MSP-PODCAST_0001_0001.wav", "A", "11", "Female", "Train", 7.0, 1.0, 4.0),
        ("MSP-PODCAST_0001_0002.wav", "H", "11", "Female", "Train", 5.5, 6.5, 3.0),
        ("MSP-PODCAST_0002_0001.wav", "S", "12", "Male", "Train", 1.0, 2.0, 2.5),
        ("MSP-PODCAST_0002_0002.wav", "N", "12", "Male", "Development", 4.0, 4.0, 4.0),
        ("MSP-PODCAST_0003_0001.wav", "A", "13", "Male", "Test1", 6.0, 2.5, 5.5),
    ]
    root = msp_tree(tmp_path / "MSP-Podcast", [csv_line(*row) for row in rows], [row[0] for row in rows])
    dm = build_data_module(
        features=LogMel(sample_rate=16000, n_mels=16),
        root=str(root),
        corpus="msp_podcast",
        labels="corpus",
        split="official",
        duration=CLIP_SECONDS,
        cache_dir=str(tmp_path / "cache"),
        batch_size=2,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.require_dimensions().to_dict() == {"low": 1.0, "high": 7.0}
    expected = {row[0]: [(value - 1.0) / 3.0 - 1.0 for value in row[5:]] for row in rows}
    got = {**ratings_by_file(dm, "train"), **ratings_by_file(dm, "val"), **ratings_by_file(dm, "test")}
    assert got.keys() == expected.keys()
    for name, values in got.items():
        np.testing.assert_allclose(values, expected[name], atol=1e-6)
    assert batches_of(dm)[0]["dimensions"].dtype == torch.float32


def iemocap_tree(root: Path) -> Path:
    """Two sessions, one dialog each, four turns with their own [V, A, D] (IEMOCAP's 1-5 scale)."""
    ratings = {}
    for session in (1, 2):
        dialog = f"Ses0{session}F_impro01"
        text = IEMOCAP_HEADER
        for i, code in enumerate(("neu", "hap", "ang", "sad")):
            utterance = f"{dialog}_{'FM'[i % 2]}{i:03d}"
            v, a, d = 1.0 + i, 5.0 - i * 0.5, 2.0 + session * 0.5
            ratings[f"{utterance}.wav"] = (a, v, d)  # in DIMENSIONS order: arousal, valence, dominance
            text += (
                f"[{i:.4f} - {i + 0.5:.4f}]\t{utterance}\t{code}\t[{v:.4f}, {a:.4f}, {d:.4f}]\n{ANNOTATORS}\n"
            )
            write_tone(
                root / f"Session{session}/sentences/wav/{dialog}/{utterance}.wav",
                seconds=0.3,
                freq=200.0 + 40 * i,
            )
        (root / f"Session{session}/dialog/EmoEvaluation").mkdir(parents=True)
        (root / f"Session{session}/dialog/EmoEvaluation/{dialog}.txt").write_text(text)
    return root, ratings


def test_iemocap_ratings_reach_the_batch_normalised_from_1_to_5(tmp_path):
    root, ratings = iemocap_tree(tmp_path / "IEMOCAP_full_release")
    dm = build_data_module(
        features=LogMel(sample_rate=16000, n_mels=16),
        root=str(root),
        corpus="iemocap",
        labels="corpus",
        split="sessions",
        fold=1,
        duration=0.3,
        cache_dir=str(tmp_path / "cache"),
        batch_size=3,
    )
    dm.prepare_data()
    dm.setup("fit")
    table = dm.manifest.table
    raw = {Path(p).name: tuple(table.loc[i, list(DIMENSIONS)]) for i, p in enumerate(table["path"])}
    assert raw == {name: ratings[name] for name in raw} and len(raw) == 8
    got = {**ratings_by_file(dm, "train"), **ratings_by_file(dm, "val"), **ratings_by_file(dm, "test")}
    for name, values in got.items():
        np.testing.assert_allclose(values, [(r - 1.0) / 2.0 - 1.0 for r in ratings[name]], atol=1e-6)


def test_a_corpus_without_ratings_carries_none_and_refuses_dimensional_tasks(tone_root, tmp_path):
    dm = build_data_module(
        features=LogMel(sample_rate=16000, n_mels=16),
        root=str(tone_root),
        corpus="ravdess",
        duration=0.3,
        cache_dir=str(tmp_path / "cache"),
        batch_size=8,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert "dimensions" not in batches_of(dm)[0]
    with pytest.raises(InvalidSetting, match="data.corpus=ravdess has no arousal/valence/dominance ratings"):
        dm.require_dimensions()


def test_demo_corpus_rows_carry_their_design_targets(small_demo_root, tmp_path):
    from ser_lightning.demo_corpus import DemoCorpusSpec
    from ser_lightning.demo_corpus.dimensions import demo_dimensions, utterance_of

    from .helpers.corpora import SMALL_DEMO

    dm = build_data_module(
        features=LogMel(sample_rate=16000, n_mels=16),
        root=str(small_demo_root),
        corpus="ravdess",
        demo=dict(SMALL_DEMO),
        duration=SMALL_DEMO["duration"],
        cache_dir=str(tmp_path / "cache"),
        batch_size=64,
    )
    dm.prepare_data()
    dm.setup("fit")
    scale = dm.require_dimensions()
    assert scale.to_dict() == {"low": 1.0, "high": 5.0}
    batch = batches_of(dm, "test")[0]
    spec = DemoCorpusSpec(**SMALL_DEMO)
    for row, values in zip(batch["row"].tolist()[:5], batch["dimensions"].tolist()[:5], strict=True):
        path = dm.manifest.table["path"][row]
        np.testing.assert_allclose(
            values, scale.normalise(np.array(demo_dimensions(spec, utterance_of(path)))), atol=1e-6
        )
