"""A saved baseline scored by `predict` and served by `serve`, as a network's checkpoint is: the
same results, and the probabilities of `BaselineModel` (the run's own scoring of files)."""

import io
import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from ser_lightning.baseline import run_baseline
from ser_lightning.baselines.prediction import BaselineModel
from ser_lightning.baselines.scoring import BaselineScorer, baseline_model_file, load_scoring_model
from ser_lightning.inference.media import InputError
from ser_lightning.inference.results import FilePrediction
from ser_lightning.predict import predict
from ser_lightning.serving.baseline_service import build_any_app
from ser_lightning.utils.errors import InvalidSetting

from .helpers.configs import compose_train
from .helpers.serving import served

pytestmark = pytest.mark.slow  # a baseline fitted on the tone corpus first (about 20 s)


@pytest.fixture(scope="module")
def baseline_run(tone_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("baseline_run")
    overrides = [
        "data=ravdess",
        f"data.root={tone_root}",
        "data.duration=0.3",
        "classifier=logreg",
        "importance.enabled=false",
    ]
    summary, _ = run_baseline(compose_train(overrides, run_dir, run_dir / "cache", "baseline"))
    files = sorted(tone_root.rglob("*.wav"))[::40]
    return SimpleNamespace(run_dir=run_dir, model=run_dir / "model.skops", files=files, summary=summary)


def expected_probabilities(run, files):
    model = BaselineModel.load(run.model)
    scored = model.predict_files(files)
    return model.labels, scored[[f"prob_{label}" for label in model.labels]].to_numpy()


def test_the_model_file_or_its_run_folder_names_a_baseline(baseline_run, tmp_path):
    assert baseline_model_file(baseline_run.run_dir) == baseline_run.model
    assert baseline_model_file(baseline_run.model) == baseline_run.model
    assert baseline_model_file(tmp_path / "best.ckpt") is None
    assert isinstance(load_scoring_model(baseline_run.run_dir), BaselineScorer)
    with pytest.raises(InvalidSetting, match=r"missing\.skops does not exist"):
        load_scoring_model(tmp_path / "missing.skops")


def test_predict_scores_files_with_a_baseline_as_its_run_does(baseline_run, tmp_path):
    cfg = compose_train(
        [f"ckpt_path={baseline_run.run_dir}", "inputs=[]", "device=cpu", "output=json"],
        tmp_path,
        config_name="predict",
    )
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    cfg.inputs = [str(p) for p in baseline_run.files] + [str(broken)]
    stream = io.StringIO()
    results = predict(cfg, stream=stream)
    scored = [r for r in results if isinstance(r, FilePrediction)]
    assert len(scored) == len(baseline_run.files)
    assert [r.path for r in results if isinstance(r, InputError)] == [str(broken)]
    labels, expected = expected_probabilities(baseline_run, baseline_run.files)
    np.testing.assert_allclose(np.stack([r.probabilities for r in scored]), expected, atol=1e-5)
    assert [r.predicted for r in scored] == [labels[i] for i in expected.argmax(axis=1)]
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    assert len(lines) == len(baseline_run.files) + 1  # one row per input, the error's too


def test_serve_answers_real_requests_with_the_baselines_probabilities(baseline_run, tmp_path):
    model = SimpleNamespace(ckpt=baseline_run.model)
    with served(model, tmp_path, "web=false", "log_level=warning", build=build_any_app) as (url, _, _):
        info = httpx.get(f"{url}/v1/model", timeout=30).json()
        labels, expected = expected_probabilities(baseline_run, baseline_run.files)
        assert info["labels"] == labels and info["checkpoint"] == "model.skops"
        assert info["network"] == "logreg (baseline)" and info["features"]["name"] == "egemaps"
        # a logistic regression of 88 standardised features: its weights, intercepts and scaler
        assert info["parameters"] >= len(labels) * 88 + len(labels)
        assert info["test_metrics"]["ua"] == pytest.approx(baseline_run.summary["metrics"]["test"]["ua"])
        for path, probabilities in zip(baseline_run.files, expected, strict=True):
            with open(path, "rb") as upload:
                answer = httpx.post(
                    f"{url}/v1/predict", files={"file": (Path(path).name, upload)}, timeout=60
                )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            got = np.array([body["probabilities"][label] for label in labels])
            np.testing.assert_allclose(got, probabilities, atol=1e-5)
            assert body["emotion"] == labels[int(probabilities.argmax())]
        refused = httpx.post(f"{url}/v1/predict", files={"file": ("x.wav", b"not audio")}, timeout=30)
        assert refused.status_code in (415, 422)
