"""calibration=conformal end to end on a tone corpus: the threshold stored in the best checkpoint, the
test report's coverage by speaker and gender, eval and predict giving the same sets, and the
warning when the validation speakers leak (data.split=random)."""

import io
import json
import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ser_lightning.checkpoint import read_checkpoint
from ser_lightning.conformal import prediction_sets, quantile_rank, set_labels
from ser_lightning.eval import evaluate
from ser_lightning.predict import predict
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import TINY_RUN, ragged_tone_corpus, tone_corpus

pytestmark = pytest.mark.slow

RUN = [
    *TINY_RUN,
    "trainer.max_epochs=2",
    "print_config=false",
    "calibration=conformal",
    "calibration.coverage=0.8",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tone_corpus(tmp_path_factory.mktemp("tones") / "corpus")
    run_dir, cache = tmp_path_factory.mktemp("run"), tmp_path_factory.mktemp("cache")
    _, objects = train(compose_train([*RUN, f"data.root={root}"], run_dir, cache))
    ckpt = objects["summary"]["best_checkpoint"]
    return SimpleNamespace(root=root, run_dir=run_dir, cache=cache, ckpt=ckpt, summary=objects["summary"])


def test_the_threshold_is_stored_and_the_test_report_scores_its_sets(trained):
    stored = read_checkpoint(trained.ckpt)["hyper_parameters"]["calibration"]
    conformal = stored["conformal"]
    # 2 validation actors x 32 takes, none of them a training or test speaker (data.split=actor)
    assert (conformal["files"], conformal["speakers"], conformal["coverage"]) == (64, 2, 0.8)
    assert conformal["speakers_in_training"] == 0 and conformal["speakers_in_test"] == 0
    assert conformal["rank"] == quantile_rank(64, 0.8)

    directory = trained.run_dir / "test_report"
    report = json.loads((directory / "metrics.json").read_text())["conformal"]
    predictions = pd.read_csv(directory / "predictions.csv", dtype={"speaker": str})
    probabilities = predictions[[c for c in predictions if c.startswith("prob_")]].to_numpy()
    labels = [c.removeprefix("prob_") for c in predictions if c.startswith("prob_")]
    # the sets, recomputed from the written probabilities and the stored threshold
    members = prediction_sets(probabilities, conformal["threshold"])
    expected = ["|".join(set_labels(m, labels, p)) for m, p in zip(members, probabilities, strict=True)]
    assert predictions["emotion_set"].tolist() == expected
    covered = [
        t in s.split("|") for t, s in zip(predictions["true"], predictions["emotion_set"], strict=True)
    ]
    assert report["coverage"] == pytest.approx(np.mean(covered))
    assert report["mean_set_size"] == pytest.approx(members.sum(axis=1).mean())
    assert report["target"] == 0.8 and report["calibration_speakers"] == 2

    table = pd.read_csv(directory / "conformal.csv", dtype={"group": str})
    speakers = table[table["by"] == "speaker"]
    assert sorted(speakers["group"]) == sorted(predictions["speaker"].unique())
    for row in speakers.itertuples():
        mine = predictions["speaker"] == row.group
        assert row.coverage == pytest.approx(np.mean(np.array(covered)[mine]))
        assert row.holds == (row.ci_high >= 0.8)
    assert set(table["by"]) >= {"overall", "gender", "speaker", "emotion"}
    assert (directory / "conformal.png").stat().st_size > 0
    assert trained.summary["test_results"]["conformal"]["coverage"] == pytest.approx(report["coverage"])


def test_eval_and_predict_give_the_checkpoints_sets(trained, tmp_path, caplog):
    machine = [f"paths.data_dir={trained.root.parent}", f"paths.cache_dir={trained.cache}"]
    cfg = compose_train(
        [f"ckpt_path={trained.ckpt}", "device=cpu", *machine], tmp_path / "eval", config_name="eval"
    )
    report, summary = evaluate(cfg)
    training = json.loads((trained.run_dir / "test_report" / "metrics.json").read_text())["conformal"]
    assert summary["conformal"]["coverage"] == pytest.approx(training["coverage"])
    assert summary["conformal"]["mean_set_size"] == pytest.approx(training["mean_set_size"])
    # plain softmax: the sets were fitted on calibrated probabilities, so there are none
    cfg = compose_train(
        [f"ckpt_path={trained.ckpt}", "device=cpu", "calibration=none", *machine],
        tmp_path / "plain",
        config_name="eval",
    )
    assert evaluate(cfg)[1]["conformal"] == {}

    clips = sorted((trained.root / "Actor_01").glob("*.wav"))[:3]
    cfg = compose_train(
        [f"ckpt_path={trained.ckpt}", "inputs=[]", "device=cpu", "output=json"],
        tmp_path / "p",
        config_name="predict",
    )
    cfg.inputs = [str(p) for p in clips]
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger="ser_lightning.predict"):
        results = predict(cfg, stream=stream)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    threshold = read_checkpoint(trained.ckpt)["hyper_parameters"]["calibration"]["conformal"]["threshold"]
    for item, record in zip(results, records, strict=True):
        assert record["set_coverage"] == 0.8 and record["emotion_set"][0] == record["best_guess"]
        probabilities = np.array([record["probabilities"][name] for name in item.labels])
        assert record["emotion_set"] == set_labels(
            prediction_sets(probabilities, threshold), item.labels, probabilities
        )
    sizes = [len(r["emotion_set"]) for r in records]
    assert (
        f"conformal sets (80% coverage): mean size {np.mean(sizes):.2f}; "
        f"{sum(n > 1 for n in sizes)} of {len(sizes)} files have more than one emotion"
    ) in caplog.text
    saved = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert saved["emotion_set"].tolist() == ["|".join(r["emotion_set"]) for r in records]


def test_a_random_split_warns_that_validation_speakers_leak(tmp_path, caplog):
    # takes of different lengths: the tone corpus's two repetitions are the same recording, which
    # a random split would put in two splits
    root = ragged_tone_corpus(tmp_path / "corpus")
    overrides = [*RUN, f"data.root={root}", "data.split=random", "trainer.max_epochs=1", "test=false"]
    with caplog.at_level(logging.WARNING, logger="ser_lightning.train"):
        _, objects = train(compose_train(overrides, tmp_path / "run", tmp_path / "cache"))
    conformal = read_checkpoint(objects["summary"]["best_checkpoint"])["hyper_parameters"]["calibration"][
        "conformal"
    ]
    # every validation speaker has clips in training too (32 per speaker, split at random)
    assert conformal["split"] == "random" and conformal["speakers_in_training"] == conformal["speakers"] > 0
    assert "also speak in the training split" in caplog.text and "data.split=actor" in caplog.text


def test_the_service_answers_with_the_checkpoints_set(trained, tmp_path):
    from fastapi.testclient import TestClient

    from ser_lightning.serving.schemas import Prediction
    from ser_lightning.serving.server import build_app

    from .helpers.serving import serve_config

    clip = sorted((trained.root / "Actor_02").glob("*.wav"))[0]
    cfg = serve_config(trained, tmp_path / "serve")
    with TestClient(build_app(cfg, environ={}), base_url="http://localhost") as client:
        response = client.post("/v1/predict", files={"file": (clip.name, clip.read_bytes())})
    assert response.status_code == 200, response.text
    answer = Prediction.model_validate(response.json())
    threshold = read_checkpoint(trained.ckpt)["hyper_parameters"]["calibration"]["conformal"]["threshold"]
    labels = list(answer.probabilities)
    probabilities = np.array(list(answer.probabilities.values()))
    assert answer.set_coverage == 0.8 and answer.emotion_set[0] == answer.emotion
    assert answer.emotion_set == set_labels(prediction_sets(probabilities, threshold), labels, probabilities)
