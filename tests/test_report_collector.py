"""The test stage's one evaluation: ReportCollector turns trainer.test's outputs into one report."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from sklearn.metrics import balanced_accuracy_score
from torch.utils.data import DataLoader

from ser_lightning.data.loading import CachedUtterances, collate_batch
from ser_lightning.labels import EMOTIONS
from ser_lightning.reporting.collector import ReportCollector
from ser_lightning.reporting.evaluation import evaluation_report

from .helpers.models import tiny_module

ROOT = Path("/corpora/clips")
NUM_CLIPS = 12
TESTED_ROWS = np.array([1, 2, 4, 5, 7, 8, 10, 11])  # the rows of the table a test split holds


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(0)
    return tiny_module()


@pytest.fixture(scope="module")
def clips():
    """1 s clips of noise at different levels, their table and labels."""
    rng = np.random.default_rng(0)
    levels = rng.uniform(0.05, 1.0, size=(NUM_CLIPS, 1)).astype(np.float32)
    waveforms = levels * rng.standard_normal((NUM_CLIPS, 16000)).astype(np.float32)
    labels = np.arange(NUM_CLIPS) % len(EMOTIONS)
    table = pd.DataFrame(
        {"path": [str(ROOT / f"actor{i % 3}" / f"clip{i:02d}.wav") for i in range(NUM_CLIPS)]}
    )
    return SimpleNamespace(
        waveforms=waveforms,
        labels=labels,
        dataset=CachedUtterances(waveforms, TESTED_ROWS, labels, "waveform"),
        data=SimpleNamespace(manifest=SimpleNamespace(table=table, root=str(ROOT))),
    )


def run_test(module, clips, sampler=None, batch_size: int = 3) -> tuple[ReportCollector, dict[str, float]]:
    collector = ReportCollector(clips.data)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=[collector],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(clips.dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_batch)
    trainer.test(module, dataloaders=loader, verbose=False)
    return collector, {k: float(v) for k, v in trainer.callback_metrics.items()}


def direct_probabilities(module, waveforms: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        logits = module.eval()(module.model.inputs({"waveform": torch.from_numpy(waveforms)}))
    return torch.softmax(logits.float(), dim=-1).numpy()


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_the_report_scores_every_tested_clip_once_as_scoring_them_directly_would(module, clips):
    collector, _ = run_test(module, clips)
    report = collector.report

    np.testing.assert_array_equal(collector.rows, TESTED_ROWS)
    assert report.files == [f"actor{i % 3}/clip{i:02d}.wav" for i in TESTED_ROWS]
    np.testing.assert_array_equal(report.y_true, clips.labels[TESTED_ROWS])
    probabilities = direct_probabilities(module, clips.waveforms[TESTED_ROWS])
    np.testing.assert_allclose(report.probabilities, probabilities, atol=1e-6)
    expected = evaluation_report(report.files, clips.labels[TESTED_ROWS], probabilities, EMOTIONS)
    np.testing.assert_array_equal(report.confusion, expected.confusion)
    assert report.metrics == expected.metrics
    assert report.metrics["ua"] == pytest.approx(
        balanced_accuracy_score(clips.labels[TESTED_ROWS], probabilities.argmax(axis=1))
    )


def test_the_logged_test_metrics_are_the_reports(module, clips):
    collector, logged = run_test(module, clips)
    report = collector.report
    recall_names = {f"test/recall_{name}" for name in EMOTIONS}
    assert set(logged) == {"test/loss", "test/acc", "test/ua", "test/f1"} | recall_names
    # logged as float32, as every Lightning metric
    assert logged["test/ua"] == pytest.approx(report.metrics["ua"], abs=1e-7)
    assert logged["test/acc"] == pytest.approx(report.metrics["accuracy"], abs=1e-7)
    assert logged["test/f1"] == pytest.approx(report.metrics["macro_f1"], abs=1e-7)
    for name in EMOTIONS:
        assert logged[f"test/recall_{name}"] == pytest.approx(report.per_class.loc[name, "recall"], abs=1e-7)


def test_a_clip_tested_twice_counts_once_and_the_report_keeps_table_order(module, clips):
    """As DDP's sampler does when a split does not divide among the processes: it repeats clips."""
    positions = [7, 6, 5, 4, 3, 2, 1, 0, 0, 1]
    collector, logged = run_test(module, clips, sampler=positions, batch_size=4)
    alone, _ = run_test(module, clips)
    np.testing.assert_array_equal(collector.rows, TESTED_ROWS)
    assert collector.report.files == alone.report.files
    assert collector.report.metrics == alone.report.metrics
    np.testing.assert_allclose(collector.report.probabilities, alone.report.probabilities, atol=1e-6)
    assert logged["test/ua"] == pytest.approx(alone.report.metrics["ua"], abs=1e-7)


def test_a_new_test_stage_starts_a_new_report(module, clips):
    collector, _ = run_test(module, clips)
    first = collector.report
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, callbacks=[collector], enable_progress_bar=False
    )
    fewer = CachedUtterances(clips.waveforms, TESTED_ROWS[:3], clips.labels, "waveform")
    trainer.test(module, dataloaders=DataLoader(fewer, batch_size=2, collate_fn=collate_batch), verbose=False)
    assert collector.report is not first and collector.report.metrics["num_files"] == 3
    np.testing.assert_array_equal(collector.rows, TESTED_ROWS[:3])
