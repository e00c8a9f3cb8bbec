"""The sweep report's speaker intervals and `--compare A B` on per-clip predictions of job folders."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ser_lightning.labels import EMOTIONS
from ser_lightning.report import main
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.reporting.study import build_report

K = len(EMOTIONS)


def write_job(sweep, index, overrides, y_true, y_pred, speakers, files):
    job = sweep / str(index)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "job_status.json").write_text(json.dumps({"status": "ok", "overrides": overrides}))
    probabilities = np.full((len(y_true), K), 0.02)
    probabilities[np.arange(len(y_true)), y_pred] = 1 - 0.02 * (K - 1)
    frame = pd.DataFrame(
        {"file": files, "true": [EMOTIONS[i] for i in y_true], "predicted": [EMOTIONS[i] for i in y_pred]}
    )
    for k, name in enumerate(EMOTIONS):
        frame[f"prob_{name}"] = probabilities[:, k]
    frame["speaker"] = speakers
    (job / "test_report").mkdir()
    frame.to_csv(job / "test_report" / "predictions.csv", index=False)
    confusion = np.zeros((K, K), int)
    np.add.at(confusion, (y_true, y_pred), 1)
    ua = float(np.mean([confusion[k, k] / confusion[k].sum() for k in range(K) if confusion[k].sum()]))
    (job / "summary.json").write_text(
        json.dumps({"metrics": {"test/ua": ua, "test/acc": float((y_true == y_pred).mean())}})
    )


@pytest.fixture
def sweep(tmp_path):
    """Two models on three folds of 8 speakers each: `good` is right 80 % of the time, `weak` 40 %."""
    rng = np.random.default_rng(0)
    index = 0
    for fold in range(3):
        speakers = np.repeat([f"{fold * 8 + s:02d}" for s in range(8)], 16)
        y_true = rng.integers(0, K, len(speakers))
        files = [f"Actor_{s}/clip{i:03d}.wav" for i, s in enumerate(speakers)]
        for model, skill in (("good", 0.8), ("weak", 0.4)):
            right = rng.random(len(y_true)) < skill
            y_pred = np.where(right, y_true, (y_true + 1) % K)
            write_job(
                tmp_path, index, [f"model={model}", f"data.fold={fold}"], y_true, y_pred, speakers, files
            )
            index += 1
    return tmp_path


def test_the_sweep_report_gives_speaker_intervals_of_the_mean_over_folds(sweep):
    written = build_report(sweep, sweep / "report", bootstrap=BootstrapSettings(resamples=300))
    summary = pd.read_csv(written["summary"]).set_index("model")
    for model in ("good", "weak"):
        row = summary.loc[model]
        assert row["runs"] == 3 and row["interval speakers"] == 24 and row["interval resamples"] == 300
        assert row["test/ua low"] <= row["test/ua mean"] <= row["test/ua high"]
    markdown = written["markdown"].read_text()
    assert "bootstrap over test speakers (300 resamples" in markdown


def test_compare_finds_the_better_model_on_paired_folds(sweep, capsys):
    main(
        [
            str(sweep),
            "--out",
            str(sweep / "report"),
            "--compare",
            "model=good",
            "model=weak",
            "--resamples",
            "500",
        ]
    )
    result = json.loads((sweep / "report" / "comparison.json").read_text())
    assert len(result["paired_runs"]) == 3 and result["speakers"] == 24 and result["resamples"] == 500
    ua = result["scores"]["ua"]
    assert ua["difference"] > 0.3 and ua["p_value"] < 0.01 and 0 < ua["interval"][0] <= ua["difference"]
    markdown = (sweep / "report" / "report.md").read_text()
    assert "## Paired comparison: A = `model=good` vs B = `model=weak`" in markdown
    assert "A − B" in capsys.readouterr().out


def test_compare_of_a_configuration_with_itself_has_p_one(sweep):
    written = build_report(sweep, sweep / "same", compare_configurations=("model=good", "model=good"))
    ua = json.loads(written["comparison"].read_text())["scores"]["ua"]
    assert ua["difference"] == 0.0 and ua["p_value"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "a, b, message",
    [
        ("model=good", "model=best", "no finished job has"),
        ("model=good", "optimizer=adam", "has no setting"),
        ("data.fold=0", "model=weak", "matches several configurations"),
        ("model", "model=weak", "key=value"),
    ],
)
def test_compare_says_what_is_wrong(sweep, a, b, message):
    with pytest.raises(ValueError, match=message):
        build_report(sweep, compare_configurations=(a, b))


def test_the_sweep_report_says_which_configurations_are_speaker_dependent(tmp_path, capsys):
    for index, (split, heard) in enumerate((("actor", 0), ("random", 216))):
        job = tmp_path / str(index)
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"data.split={split}"]))
        speakers = {
            "split": split,
            "speaker_independent": split == "actor",
            "test_clips": 216,
            "test_clips_with_training_speaker": heard,
        }
        (job / "summary.json").write_text(json.dumps({"metrics": {"test/ua": 0.5}, "speakers": speakers}))
    main([str(tmp_path)])
    markdown = (tmp_path / "report.md").read_text()
    assert "**Speaker-dependent protocol** (split=random): 216 of 216 test clips" in markdown
    assert "split=actor)" not in markdown
    assert "speaker-dependent protocol (split=random)" in capsys.readouterr().out
