"""The agreement section in eval and in the sweep report: the training run's numbers, recomputed directly.

A tiny hard-label model trained on the small demo corpus (whose clips carry simulated annotator
votes) is evaluated on its own test split: eval's agreement section must equal the training run's
test report on the same clips, and a direct computation from the raters' votes and eval's
predictions (scipy's Jensen-Shannon distance, speaker resampling by repeating the drawn speakers'
clips). The sweep report's agreement columns are checked the same way on hand-made job folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial.distance import jensenshannon

from ser_lightning.demo_corpus import DemoCorpusSpec
from ser_lightning.demo_corpus.dimensions import utterance_of
from ser_lightning.demo_corpus.votes import demo_votes
from ser_lightning.eval import evaluate
from ser_lightning.reporting.agreement_intervals import AGREEMENT_SCORES
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.reporting.study import build_report
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import SMALL_DEMO, small_demo_overrides
from .helpers.models import TINY_TRAINING

RESAMPLES = 200


@pytest.fixture(scope="module")
def trained(small_demo_root, tmp_path_factory):
    """A few batches of hard-label training; the whole test split is tested, as eval scores it."""
    run_dir, cache_dir = (
        tmp_path_factory.mktemp("agreement_train"),
        tmp_path_factory.mktemp("agreement_cache"),
    )
    overrides = [*small_demo_overrides(small_demo_root), *TINY_TRAINING, "trainer.limit_test_batches=1.0"]
    metrics, objects = train(compose_train(overrides, run_dir, cache_dir))
    return SimpleNamespace(
        ckpt=objects["summary"]["best_checkpoint"],
        run_dir=run_dir,
        cache_dir=cache_dir,
        metrics=metrics,
        summary=objects["summary"],
        root=small_demo_root,
    )


def run_eval(trained, run_dir: Path, *overrides: str) -> dict:
    cfg = compose_train(
        [
            f"ckpt_path={trained.ckpt}",
            "device=cpu",
            f"paths.data_dir={trained.root.parent}",  # the machine that trained: its corpus and caches
            f"paths.cache_dir={trained.cache_dir}",
            *overrides,
        ],
        run_dir,
        config_name="eval",
    )
    _, summary = evaluate(cfg)
    return summary


def direct_scores(frame: pd.DataFrame) -> np.ndarray:
    """Mean divergence and accuracy on high- and low-agreement clips of a multiset of clips."""
    high = frame["agreement"] >= 0.75
    return np.array(
        [frame["js"].mean(), frame["correct"][high].mean(), frame["correct"][~high].mean()], dtype=float
    )


def direct_interval(frame: pd.DataFrame, settings: BootstrapSettings) -> np.ndarray:
    """Percentile intervals `(3, 2)` from resampling speakers: the drawn speakers' clips, repeated."""
    speakers = sorted(frame["speaker"].unique())
    rng = np.random.default_rng(settings.seed)
    draws = rng.multinomial(len(speakers), np.full(len(speakers), 1 / len(speakers)), size=settings.resamples)
    by_speaker = {s: frame[frame["speaker"] == s] for s in speakers}
    scores = np.array(
        [
            direct_scores(
                pd.concat([by_speaker[s] for s, n in zip(speakers, draw, strict=True) for _ in range(n)])
            )
            for draw in draws
        ]
    )
    tail = 100 * (1 - settings.confidence) / 2
    return np.array([np.percentile(s[np.isfinite(s)], [tail, 100 - tail]) for s in scores.T])


def test_eval_reports_the_training_runs_agreement_section_on_the_same_clips(trained, tmp_path, capsys):
    summary = run_eval(trained, tmp_path / "eval")
    printed = capsys.readouterr().out
    at_training = trained.summary["test_results"]["agreement"]
    agreement = summary["agreement"]
    assert agreement["clips"] == at_training["clips"] == summary["metrics"]["num_files"] > 0
    for key, value in at_training.items():
        if key != "intervals":
            assert agreement[key] == pytest.approx(value, abs=1e-6), key
    for name in AGREEMENT_SCORES:
        np.testing.assert_allclose(
            agreement["intervals"]["intervals"][name], at_training["intervals"]["intervals"][name], atol=1e-6
        )
        # the training run logged them as metrics (W&B, summary.json, the sweep report)
        assert trained.metrics[f"test/{name}"] == pytest.approx(at_training[name])
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["agreement"] == agreement
    assert (tmp_path / "eval" / "agreement.png").stat().st_size > 0
    assert summary["files_written"]["agreement_csv"] == str(tmp_path / "eval" / "agreement.csv")
    assert f"annotator agreement ({agreement['clips']} clips with votes): JS divergence" in printed


def test_evals_agreement_equals_a_direct_computation_from_the_votes(trained, tmp_path):
    summary = run_eval(trained, tmp_path / "eval", f"bootstrap.resamples={RESAMPLES}", "bootstrap.seed=3")
    agreement = summary["agreement"]
    predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv", dtype={"speaker": str})
    labels = [c.removeprefix("prob_") for c in predictions.columns if c.startswith("prob_")]
    spec = DemoCorpusSpec(**SMALL_DEMO)
    rows = []
    for _, clip in predictions.iterrows():
        counts = demo_votes(spec, utterance_of(clip["file"]))  # the simulated raters of the demo corpus
        votes = np.array([counts.get(name, 0) for name in labels], dtype=float)
        votes /= votes.sum()
        predicted = clip[[f"prob_{name}" for name in labels]].to_numpy(dtype=float)
        rows.append(
            {
                "speaker": clip["speaker"],
                "js": jensenshannon(predicted, votes, base=2) ** 2,
                "agreement": votes.max(),
                "correct": clip["true"] == clip["predicted"],
                "abstains": predicted.max() < 0.5,
            }
        )
    frame = pd.DataFrame(rows)
    high = frame["agreement"] >= 0.75
    expected = direct_scores(frame)
    for i, name in enumerate(AGREEMENT_SCORES):
        assert agreement[name] == pytest.approx(expected[i], abs=1e-5), name
    assert (agreement["high_agreement_clips"], agreement["low_agreement_clips"]) == (
        high.sum(),
        (~high).sum(),
    )
    assert agreement["abstains_low_agreement"] == int((frame["abstains"] & ~high).sum())
    assert agreement["abstains_high_agreement"] == int((frame["abstains"] & high).sum())
    intervals = agreement["intervals"]
    assert (intervals["resamples"], intervals["seed"]) == (RESAMPLES, 3)
    assert intervals["speakers"] == predictions["speaker"].nunique() >= 2
    expected_intervals = direct_interval(frame, BootstrapSettings(RESAMPLES, 3))
    for i, name in enumerate(AGREEMENT_SCORES):
        np.testing.assert_allclose(intervals["intervals"][name], expected_intervals[i], atol=1e-5)


def test_eval_on_a_corpus_without_votes_says_so_in_one_line(trained, tmp_path, capsys):
    """Test files of the demo corpus copied into a plain RAVDESS folder: the ravdess parser knows no votes."""
    folder = tmp_path / "ravdess"
    tested = pd.read_csv(trained.run_dir / "test_report" / "predictions.csv")["file"]
    for name in tested[:24]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(trained.root / name, folder / name)
    summary = run_eval(trained, tmp_path / "eval", "data=ravdess", f"data.root={folder}", "split=all")
    assert summary["agreement"] is None and summary["metrics"]["num_files"] == 24
    assert not (tmp_path / "eval" / "agreement.json").exists()
    assert "annotator agreement: none (the corpus has no annotator votes)" in capsys.readouterr().out


# ------------------------------------------------------------------ the sweep report
def write_job(sweep: Path, index: int, overrides: list[str], table: pd.DataFrame) -> dict:
    job = sweep / str(index)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "job_status.json").write_text(json.dumps({"status": "ok", "overrides": overrides}))
    (job / "test_report").mkdir()
    table.to_csv(job / "test_report" / "agreement.csv", index=False)
    scores = dict(zip(AGREEMENT_SCORES, direct_scores(table), strict=True))
    # as a run recorded before the scores joined the metrics: only its test results hold them
    (job / "summary.json").write_text(json.dumps({"metrics": {}, "test_results": {"agreement": scores}}))
    return scores


def test_the_sweep_report_gives_the_agreement_scores_with_intervals_over_runs(tmp_path):
    rng = np.random.default_rng(0)
    jobs: dict[str, list] = {"soft": [], "hard": []}
    index = 0
    for seed in range(2):
        speakers = np.repeat([f"{s:02d}" for s in range(5)], 8)
        agreement = rng.choice([0.5, 2 / 3, 5 / 6, 1.0], len(speakers))
        for targets, hit in (("soft", 0.7), ("hard", 0.5)):
            table = pd.DataFrame(
                {
                    "file": [f"clip{i}.wav" for i in range(len(speakers))],
                    "speaker": speakers,
                    "js": rng.uniform(0, 0.6, len(speakers)),
                    "agreement": agreement,
                    "correct": rng.random(len(speakers)) < hit,
                }
            )
            table["js_divergence"], table["high_agreement"] = table["js"], table["agreement"] >= 0.75
            jobs[targets].append(
                (write_job(tmp_path, index, [f"data.targets={targets}", f"seed={seed}"], table), table)
            )
            index += 1
    settings = BootstrapSettings(resamples=RESAMPLES, seed=5)
    written = build_report(tmp_path, metric="test/js_divergence", bootstrap=settings)
    summary = pd.read_csv(written["summary"]).set_index("data.targets")
    for targets in ("soft", "hard"):
        for name in AGREEMENT_SCORES:
            values = [scores[name] for scores, _ in jobs[targets]]
            assert summary.loc[targets, f"test/{name} mean"] == pytest.approx(np.mean(values))
            assert summary.loc[targets, f"test/{name} std"] == pytest.approx(np.std(values, ddof=1))
    # the interval of the mean over the two seeds, resampled directly: each configuration's draws
    # start from the seed, each run's speakers drawn in job order
    rng = np.random.default_rng(settings.seed)
    soft = [table for _, table in jobs["soft"]]
    draws = [rng.multinomial(5, np.full(5, 0.2), size=RESAMPLES) for _ in soft]
    mean_js = np.mean(
        [
            [
                pd.concat([t[t["speaker"] == f"{s:02d}"] for s in range(5) for _ in range(n[s])])["js"].mean()
                for n in d
            ]
            for t, d in zip(soft, draws, strict=True)
        ],
        axis=0,
    )
    np.testing.assert_allclose(
        summary.loc["soft", ["test/js_divergence low", "test/js_divergence high"]].to_numpy(dtype=float),
        np.percentile(mean_js, [2.5, 97.5]),
        atol=1e-9,
    )
    report = Path(written["markdown"]).read_text()
    assert "test/js_divergence" in report and "test/accuracy_low_agreement" in report
