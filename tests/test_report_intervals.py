"""Speaker-bootstrap intervals and the paired comparison over speakers (reporting/intervals.py)."""

import numpy as np
import pytest

from ser_lightning.labels import EMOTIONS
from ser_lightning.metrics import confusion_counts, unweighted_accuracy
from ser_lightning.reporting.evaluation import evaluation_report
from ser_lightning.reporting.intervals import (
    BootstrapSettings,
    ScoredRun,
    mean_over_runs_bootstrap,
    paired_comparison,
    speaker_bootstrap,
)

K = len(EMOTIONS)


def speakers_clips(num_speakers: int, clips_per_speaker: int = 16, seed: int = 0, skill=None):
    """Labels, predictions and speakers: each speaker has its own accuracy (a model that does well
    on some voices, badly on others), so clips of one speaker are correlated."""
    rng = np.random.default_rng(seed)
    y_true, y_pred, speakers = [], [], []
    for s in range(num_speakers):
        accuracy = rng.uniform(0.2, 0.9) if skill is None else skill
        labels = rng.integers(0, K, clips_per_speaker)
        right = rng.random(clips_per_speaker) < accuracy
        wrong = (labels + rng.integers(1, K, clips_per_speaker)) % K
        y_true += labels.tolist()
        y_pred += np.where(right, labels, wrong).tolist()
        speakers += [f"s{s:03d}"] * clips_per_speaker
    return np.array(y_true), np.array(y_pred), np.array(speakers)


def test_interval_contains_the_point_estimate_and_narrows_with_more_speakers():
    widths = []
    for num_speakers in (6, 60):
        y_true, y_pred, speakers = speakers_clips(num_speakers)
        record = speaker_bootstrap(y_true, y_pred, speakers, K, BootstrapSettings(resamples=500, seed=1))
        assert record["resamples"] == 500 and record["speakers"] == num_speakers and record["seed"] == 1
        point = unweighted_accuracy(confusion_counts(y_true, y_pred, K))
        low, high = record["intervals"]["ua"]
        assert low <= point <= high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~ 1 / sqrt(speakers): sqrt(10) ~ 3.2 times narrower


def test_speakers_not_clips_are_resampled():
    """The same clips, told apart as 6 speakers or as 96 one-clip "speakers": the speaker
    interval is wider, as the clips of a speaker are not independent."""
    y_true, y_pred, speakers = speakers_clips(6)
    by_speaker = speaker_bootstrap(y_true, y_pred, speakers, K)["intervals"]["accuracy"]
    by_clip = speaker_bootstrap(y_true, y_pred, np.arange(len(y_true)), K)["intervals"]["accuracy"]
    assert by_speaker[1] - by_speaker[0] > by_clip[1] - by_clip[0]


def test_bootstrap_is_seeded_and_one_speaker_has_no_interval():
    y_true, y_pred, speakers = speakers_clips(8)
    a = speaker_bootstrap(y_true, y_pred, speakers, K, BootstrapSettings(seed=3))
    assert a == speaker_bootstrap(y_true, y_pred, speakers, K, BootstrapSettings(seed=3))
    assert a != speaker_bootstrap(y_true, y_pred, speakers, K, BootstrapSettings(seed=4))
    one = speaker_bootstrap(y_true[:16], y_pred[:16], speakers[:16], K)
    assert one["intervals"]["ua"] is None and "one test speaker" in one["note"]


def test_the_evaluation_report_carries_the_intervals():
    import pandas as pd

    y_true, y_pred, speakers = speakers_clips(10)
    probabilities = np.eye(K)[y_pred] * 0.9 + 0.1 / K
    clips = pd.DataFrame({"speaker": speakers, "gender": ["female", "male"] * (len(speakers) // 2)})
    report = evaluation_report(
        [f"{i}.wav" for i in range(len(y_true))], y_true, probabilities, EMOTIONS, clips=clips
    )
    record = report.metrics_record()
    assert record["intervals"]["resamples"] == 1000 and record["intervals"]["speakers"] == 10
    for key in ("ua", "accuracy", "macro_f1"):
        low, high = record["intervals"]["intervals"][key]
        assert low <= report.metrics[key] <= high
    assert list(report.predictions_frame()["speaker"]) == list(speakers)


def runs(y_true, y_pred, speakers, name):
    return [ScoredRun(name, [str(i) for i in range(len(y_true))], y_true, y_pred, speakers, K)]


def test_paired_comparison_of_identical_predictions_has_p_one():
    y_true, y_pred, speakers = speakers_clips(24)
    result = paired_comparison(runs(y_true, y_pred, speakers, "a"), runs(y_true, y_pred, speakers, "b"))
    for key in ("ua", "accuracy", "macro_f1"):
        assert result[key]["difference"] == 0.0
        assert result[key]["p_value"] == pytest.approx(1.0)
        assert result[key]["interval"] == [0.0, 0.0]


def test_paired_comparison_finds_a_clearly_better_model():
    rng = np.random.default_rng(5)
    y_true, good, speakers = speakers_clips(24, skill=0.8, seed=2)
    bad = np.where(rng.random(len(y_true)) < 0.35, y_true, (y_true + 1) % K)
    result = paired_comparison(runs(y_true, good, speakers, "a"), runs(y_true, bad, speakers, "b"))
    assert result["ua"]["difference"] > 0.3
    assert result["ua"]["p_value"] < 0.01
    low, high = result["ua"]["interval"]
    assert 0 < low <= result["ua"]["difference"] <= high
    # and the other way round: the same p, the opposite difference
    reverse = paired_comparison(runs(y_true, bad, speakers, "b"), runs(y_true, good, speakers, "a"))
    assert reverse["ua"]["difference"] == pytest.approx(-result["ua"]["difference"])
    assert reverse["ua"]["p_value"] < 0.01


def test_paired_comparison_needs_the_same_clips():
    y_true, y_pred, speakers = speakers_clips(4)
    other = runs(y_true[::-1].copy(), y_pred, speakers, "b")
    with pytest.raises(ValueError, match="same test clips"):
        paired_comparison(runs(y_true, y_pred, speakers, "a"), other)


def test_mean_over_folds_resamples_each_folds_own_speakers():
    folds = []
    for fold in range(3):
        y_true, y_pred, speakers = speakers_clips(4, seed=fold)
        folds.append(
            ScoredRun(
                f"fold{fold}", list(range(len(y_true))), y_true, y_pred, [f"f{fold}{s}" for s in speakers], K
            )
        )
    result = mean_over_runs_bootstrap(folds, BootstrapSettings(resamples=300))
    expected = np.mean([unweighted_accuracy(f.confusions.sum(axis=0)) for f in folds])
    assert result["ua"]["mean"] == pytest.approx(expected)
    low, high = result["ua"]["interval"]
    assert low <= expected <= high
