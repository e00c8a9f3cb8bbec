"""The sweep report of dimensional jobs: mean CCC per dimension over folds, with a speaker-bootstrap
interval checked against a direct resampling of the clips (the same draws, the plain CCC formula)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.reporting.study import build_report

RESAMPLES = 200


def direct_ccc(x: np.ndarray, y: np.ndarray) -> float:
    covariance = np.mean((x - x.mean()) * (y - y.mean()))
    return 2 * covariance / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)


def write_job(sweep, index, overrides, frame):
    job = sweep / str(index)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "job_status.json").write_text(json.dumps({"status": "ok", "overrides": overrides}))
    (job / "test_report").mkdir()
    frame.to_csv(job / "test_report" / "dimension_predictions.csv", index=False)
    ccc = {n: direct_ccc(frame[n].to_numpy(), frame[f"{n}_true"].to_numpy()) for n in DIMENSIONS}
    metrics = {f"test/ccc_{n}": v for n, v in ccc.items()} | {"test/ccc": float(np.mean(list(ccc.values())))}
    (job / "summary.json").write_text(json.dumps({"metrics": metrics}))


@pytest.fixture
def sweep(tmp_path):
    """Two models on three folds of 6 speakers: `close` predicts the ratings with little noise, `noisy` with much."""
    rng = np.random.default_rng(1)
    folds = []
    index = 0
    for fold in range(3):
        speakers = np.repeat([f"{fold * 6 + s:02d}" for s in range(6)], 10)
        rated = rng.uniform(1, 5, (len(speakers), 3))
        for model, noise in (("close", 0.3), ("noisy", 1.5)):
            frame = pd.DataFrame(
                {"file": [f"clip{i}.wav" for i in range(len(speakers))], "speaker": speakers}
            )
            for i, name in enumerate(DIMENSIONS):
                frame[name] = np.clip(rated[:, i] + rng.normal(0, noise, len(speakers)), 1, 5)
                frame[f"{name}_true"] = rated[:, i]
            write_job(tmp_path, index, [f"model={model}", f"data.fold={fold}"], frame)
            folds.append((model, frame))
            index += 1
    return tmp_path, folds


def direct_interval(frames: list[pd.DataFrame], name: str, seed: int) -> list[float]:
    """Draw each fold's speakers as the report does, repeat the drawn speakers' clips, score with the plain formula."""
    rng = np.random.default_rng(seed)
    draws = []
    for frame in frames:
        ids = np.unique(frame["speaker"].astype(str))
        weights = rng.multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=RESAMPLES)
        scores = []
        for w in weights:
            picked = pd.concat(
                [frame[frame["speaker"] == s] for s, n in zip(ids, w, strict=True) for _ in range(n)]
            )
            scores.append(direct_ccc(picked[name].to_numpy(), picked[f"{name}_true"].to_numpy()))
        draws.append(scores)
    return list(np.percentile(np.mean(draws, axis=0), [2.5, 97.5]))


def test_the_sweep_report_gives_each_dimensions_mean_ccc_with_speaker_intervals(sweep):
    folder, folds = sweep
    settings = BootstrapSettings(resamples=RESAMPLES, seed=3)
    written = build_report(folder, folder / "report", metric="test/ccc", bootstrap=settings)
    summary = pd.read_csv(written["summary"]).set_index("model")
    for model in ("close", "noisy"):
        frames = [frame for m, frame in folds if m == model]
        row = summary.loc[model]
        for name in DIMENSIONS:
            expected = np.mean([direct_ccc(f[name].to_numpy(), f[f"{name}_true"].to_numpy()) for f in frames])
            assert row[f"test/ccc_{name} mean"] == pytest.approx(expected)
            interval = [row[f"test/ccc_{name} low"], row[f"test/ccc_{name} high"]]
            assert interval == pytest.approx(direct_interval(frames, name, settings.seed), abs=1e-9)
            assert interval[0] <= row[f"test/ccc_{name} mean"] <= interval[1]
    assert summary.loc["close", "test/ccc_valence low"] > summary.loc["noisy", "test/ccc_valence high"]
    markdown = written["markdown"].read_text()
    assert "test/ccc_arousal" in markdown and "bootstrap over test speakers" in markdown
    assert written["plot"].is_file()
