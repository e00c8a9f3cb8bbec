"""The classical baselines: `python -m ser_lightning.baseline` on the demo and tone corpora."""

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from ser_lightning.baseline import run_baseline
from ser_lightning.baselines.classifiers import build_pipeline, class_probabilities, speaker_normalize
from ser_lightning.baselines.model_files import load_model
from ser_lightning.baselines.prediction import BaselineModel
from ser_lightning.data.protocol_card import card_hash, differing_fields
from ser_lightning.features.opensmile_features import clip_features
from ser_lightning.utils.errors import InvalidSetting

from .helpers.configs import compose_train
from .helpers.corpora import ragged_tone_corpus, small_demo_overrides

REPO = Path(__file__).resolve().parents[1]


def tone_overrides(root: Path, *extra: str) -> list[str]:
    return ["data=ravdess", f"data.root={root}", "data.duration=0.3", "importance.n_repeats=2", *extra]


@pytest.mark.slow  # 15-35 s on 2 cores: in the slow set, which CI runs, to keep the default suite near 10 min
def test_logreg_on_egemaps_writes_the_report_model_and_importance(small_demo_root, tmp_path):
    cfg = compose_train(
        small_demo_overrides(small_demo_root) + ["classifier=logreg", "importance.n_repeats=2"],
        tmp_path,
        tmp_path / "cache",
        "baseline",
    )
    summary, objects = run_baseline(cfg)
    test = summary["metrics"]["test"]
    assert 0.25 < test["ua"] <= 1.0  # 8 emotions: chance is 0.125; prosody carries them
    low, high = summary["intervals"]["intervals"]["ua"]
    assert low <= test["ua"] <= high
    card = summary["protocol_card"]
    assert card["feature_normalization"]["normalize"] == "corpus"
    assert not card["feature_normalization"]["uses_unlabelled_test_clips"]
    assert summary["leakage"]["speakers_in_several_splits"] == 0
    metrics = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert metrics["protocol_card"]["hash"] == card["hash"]
    for name in ("predictions.csv", "confusion_matrix.png", "breakdowns.csv", "reliability.png"):
        assert (tmp_path / "test" / name).is_file()
    assert json.loads((tmp_path / "baseline.json").read_text())["cost"]["clips"] == 720

    importance = pd.read_csv(tmp_path / "importance.csv")
    assert len(importance) == 88 and importance["ua_drop"].is_monotonic_decreasing
    assert {f"recall_drop_{label}" for label in ("angry", "sad")} <= set(importance.columns)
    assert (tmp_path / "importance.png").stat().st_size > 10_000

    # the saved model gives the report's probabilities again
    pipeline, info = load_model(tmp_path / "model.skops")
    datamodule = objects["datamodule"]
    rows = np.sort(datamodule.manifest.indices["test"])
    vectors = np.asarray(datamodule.arrays.features[rows], dtype=np.float64).reshape(len(rows), -1)
    reloaded = class_probabilities(pipeline, vectors, len(info["labels"]))
    np.testing.assert_allclose(reloaded, objects["report"].probabilities, atol=1e-12)
    assert len(info["feature_names"]) == 88 and info["normalize"] == "corpus"
    # a saved model scores files as the run scored them
    model = BaselineModel.load(tmp_path / "model.skops")
    first = objects["report"].predictions_frame().head(3)
    # relative to the corpus root, as a network's test report lists them (the study report pairs them)
    assert (
        not Path(first["file"].iloc[0]).is_absolute() and (small_demo_root / first["file"].iloc[0]).is_file()
    )
    files = [small_demo_root / f for f in first["file"]]
    scored = model.predict_files(files)
    np.testing.assert_allclose(
        scored[[f"prob_{label}" for label in model.labels]].to_numpy(),
        objects["report"].probabilities[:3],
        atol=1e-6,
    )
    assert scored["predicted"].tolist() == first["predicted"].tolist()


@pytest.mark.slow  # a sweep, or whole runs one after another: the slow set (CI runs it)
@pytest.mark.parametrize("classifier", ["svm", "random_forest"])
def test_svm_and_forest_with_speaker_normalisation_record_it_in_the_card(classifier, tone_root, tmp_path):
    extra = ["classifier.n_estimators=20"] if classifier == "random_forest" else []
    runs = {}
    for normalize in ("speaker", "corpus"):
        cfg = compose_train(
            tone_overrides(tone_root, f"classifier={classifier}", f"features.normalize={normalize}", *extra),
            tmp_path / normalize,
            tmp_path / "cache",
            "baseline",
        )
        runs[normalize], _ = run_baseline(cfg)
    speaker, corpus = runs["speaker"]["protocol_card"], runs["corpus"]["protocol_card"]
    assert speaker["feature_normalization"]["uses_unlabelled_test_clips"]
    assert speaker["hash"] != corpus["hash"] and speaker["hash"] == card_hash(speaker)
    assert differing_fields(speaker, corpus) == ["feature_normalization"]
    # the features were computed once and read from the cache the second time
    assert any("reused features" in event for event in runs["corpus"]["cache_events"])
    load_model(tmp_path / "speaker" / "model.skops")  # its types are trusted
    with pytest.raises(InvalidSetting, match="Train with features.normalize=corpus to score single files"):
        BaselineModel.load(tmp_path / "speaker" / "model.skops")


def test_speaker_normalisation_uses_each_speakers_own_statistics():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(5, 2, (10, 3)), rng.normal(-3, 0.5, (6, 3))])
    speakers = np.array(["a"] * 10 + ["b"] * 6)
    out = speaker_normalize(values, speakers)
    for speaker in ("a", "b"):
        np.testing.assert_allclose(out[speakers == speaker].mean(axis=0), 0, atol=1e-9)
        np.testing.assert_allclose(out[speakers == speaker].std(axis=0), 1, atol=1e-6)


def test_a_file_that_would_build_an_untrusted_type_is_refused(tmp_path):
    sio.dump({"counts": collections.Counter(a=1)}, tmp_path / "model.skops")
    with pytest.raises(
        InvalidSetting, match=r"would build types that are not trusted: \['collections.Counter'\]"
    ):
        load_model(tmp_path / "model.skops")
    with pytest.raises(InvalidSetting, match="does not exist"):
        load_model(tmp_path / "missing.skops")


def test_bad_settings_name_the_setting():
    with pytest.raises(InvalidSetting, match=r"classifier.name='xgboost' must be one of"):
        build_pipeline({"name": "xgboost"}, "corpus", 0)
    with pytest.raises(InvalidSetting, match="classifier=logreg: .*penalti"):
        build_pipeline({"name": "logreg", "penalti": "l2"}, "corpus", 0)


def test_frame_sequences_are_refused_with_the_fix(tone_root, tmp_path):
    cfg = compose_train(
        tone_overrides(tone_root, "features.level=lld"), tmp_path, tmp_path / "cache", "baseline"
    )
    with pytest.raises(InvalidSetting, match="set features.level=functionals"):
        run_baseline(cfg)


@pytest.mark.slow  # a sweep, or whole runs one after another: the slow set (CI runs it)
def test_a_hydra_sweep_over_the_svm_runs_one_job_per_setting(tone_root, tmp_path):
    command = [
        sys.executable,
        "-m",
        "ser_lightning.baseline",
        "-m",
        *tone_overrides(tone_root, "classifier=svm", "classifier.C=0.1,10", "importance.enabled=false"),
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cs = [
        json.loads((tmp_path / "sweep" / str(job) / "baseline.json").read_text())["classifier"]["C"]
        for job in (0, 1)
    ]
    assert cs == [0.1, 10]


@pytest.mark.slow  # a sweep, or whole runs one after another: the slow set (CI runs it)
def test_whole_clips_give_one_vector_each_and_frames_are_refused(tmp_path):
    root = ragged_tone_corpus(tmp_path / "ragged")
    overrides = ["data=ravdess", f"data.root={root}", "data.duration=null", "importance.enabled=false"]
    cfg = compose_train(overrides, tmp_path / "run", tmp_path / "cache", "baseline")
    summary, objects = run_baseline(cfg)
    assert summary["metrics"]["test"]["ua"] > 0.3  # 8 tones: chance is 0.125
    # each clip's vector is openSMILE's on the whole clip, as decoded
    datamodule = objects["datamodule"]
    arrays = datamodule.arrays
    wave = np.asarray(arrays.waveforms[0], dtype=np.float32).reshape(-1)
    expected = clip_features(wave, 16000, "egemaps", "functionals")[:, 0]
    np.testing.assert_allclose(np.asarray(arrays.features[0]).reshape(-1), expected, rtol=1e-5, atol=1e-5)
    cfg = compose_train([*overrides, "features.level=lld"], tmp_path / "lld", tmp_path / "cache", "baseline")
    with pytest.raises(InvalidSetting, match="set features.level=functionals"):
        run_baseline(cfg)
