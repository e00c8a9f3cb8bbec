"""One tiny training run on a tone corpus, then: the temperature stored in its best checkpoint and
used by its test report; eval with and without calibration; eval robustness=... ; a duplicated
recording that stops training before it starts."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ser_lightning.checkpoint import read_checkpoint
from ser_lightning.data.leakage import LeakageError
from ser_lightning.eval import evaluate
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import TINY_RUN, tone_corpus

pytestmark = pytest.mark.slow

RUN = [*TINY_RUN, "trainer.max_epochs=3", "print_config=false"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tone_corpus(tmp_path_factory.mktemp("tones") / "corpus")
    run_dir, cache = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("cache")
    metrics, objects = train(compose_train([*RUN, f"data.root={root}"], run_dir, cache))
    return SimpleNamespace(root=root, run_dir=run_dir, cache=cache, summary=objects["summary"])


def run_eval(trained, tmp_path, *overrides):
    machine = [f"paths.data_dir={trained.root.parent}", f"paths.cache_dir={trained.cache}"]
    cfg = compose_train(
        [f"ckpt_path={trained.summary['best_checkpoint']}", "device=cpu", *machine, *overrides],
        tmp_path,
        config_name="eval",
    )
    return evaluate(cfg)


def test_the_temperature_is_stored_in_the_best_checkpoint_and_used_by_the_test_report(trained):
    stored = read_checkpoint(trained.summary["best_checkpoint"])["hyper_parameters"]["calibration"]
    assert (
        stored["method"] == "temperature" and stored["fitted_on"] == "val" and stored["files"] == 64
    )  # 2 validation actors x 32 takes
    assert stored["nll_after"] <= stored["nll_before"] + 1e-9
    assert trained.summary["calibration"]["temperature"] == pytest.approx(stored["temperature"])
    report = json.loads((trained.run_dir / "test_report" / "metrics.json").read_text())
    assert report["calibration"]["temperature"] == pytest.approx(stored["temperature"])
    assert "ece_uncalibrated" in report["calibration"]
    assert report["intervals"]["speakers"] == 2 and report["intervals"]["resamples"] == 1000
    assert (
        report["speakers"]["speaker_independent"]
        and report["speakers"]["test_clips_with_training_speaker"] == 0
    )
    assert set(report["gender_gap"]) == {"ua_female", "ua_male", "female_minus_male"}
    for name in ("reliability.png", "reliability.csv", "breakdowns.csv", "breakdowns.png"):
        assert (trained.run_dir / "test_report" / name).stat().st_size > 0
    breakdowns = pd.read_csv(trained.run_dir / "test_report" / "breakdowns.csv", dtype={"group": str})
    assert set(breakdowns["by"]) == {"gender", "speaker", "intensity"}
    assert trained.summary["leakage"]["recordings_checked"] == 192


def test_eval_applies_the_temperature_unless_calibration_none(trained, tmp_path):
    calibrated, summary = run_eval(trained, tmp_path / "a")
    plain, plain_summary = run_eval(trained, tmp_path / "b", "calibration=none")
    assert summary["calibration"]["temperature"] == pytest.approx(
        trained.summary["calibration"]["temperature"]
    )
    assert plain_summary["calibration"]["temperature"] == 1.0
    np.testing.assert_array_equal(calibrated.y_pred, plain.y_pred)  # temperature changes no prediction
    assert calibrated.metrics == plain.metrics
    train_report = json.loads((trained.run_dir / "test_report" / "metrics.json").read_text())
    assert summary["metrics"]["ua"] == pytest.approx(train_report["ua"])


def test_eval_robustness_scores_every_condition_against_clean(trained, tmp_path):
    report, summary = run_eval(
        trained,
        tmp_path,
        "robustness=standard",
        "robustness.snr_db=[10,0]",
        "robustness.reverb_rt60_s=[0.3]",
        "robustness.codecs=[{codec: opus, bitrate: 8000}]",
        "robustness.resamples=50",
    )
    table = pd.read_csv(tmp_path / "robustness.csv")
    assert list(table["condition"]) == [
        "clean",
        "white noise 10 dB",
        "white noise 0 dB",
        "babble noise 10 dB",
        "babble noise 0 dB",
        "reverb RT60 0.3 s",
        "telephone 8 kHz mu-law",
        "opus 8 kbit/s",
        "gain -20 dB",
    ]
    assert table.loc[0, "ua"] == pytest.approx(report.metrics["ua"], abs=1e-6)  # clean = the eval report
    np.testing.assert_allclose(table["measured_snr_db"].iloc[1:5], [10, 0, 10, 0], atol=0.01)
    assert (tmp_path / "robustness.png").stat().st_size > 0 and len(summary["robustness"]) == 9
    again = pd.read_csv(tmp_path / "robustness.csv")
    _, _ = run_eval(
        trained,
        tmp_path / "again",
        "robustness=standard",
        "robustness.snr_db=[10,0]",
        "robustness.reverb_rt60_s=[0.3]",
        "robustness.codecs=[{codec: opus, bitrate: 8000}]",
        "robustness.resamples=50",
    )
    pd.testing.assert_frame_equal(again, pd.read_csv(tmp_path / "again" / "robustness.csv"))  # seeded


def test_a_recording_copied_into_another_split_stops_training(tmp_path):
    root = tone_corpus(tmp_path / "corpus")
    # actor 01's take copied over the same take of every other actor (the same sound under six
    # speakers' names): six actors span all three splits, so copies are in two splits whatever the seed
    source = root / "Actor_01" / "03-01-03-01-01-01-01.wav"
    for actor in range(2, 7):
        shutil.copy(source, root / f"Actor_{actor:02d}" / f"03-01-03-01-01-01-{actor:02d}.wav")
    with pytest.raises(LeakageError, match="recording.*more than one split"):
        train(compose_train([*RUN, f"data.root={root}"], tmp_path / "run", tmp_path / "cache"))
