"""The study report's classical baseline row: `python -m ser_lightning.report SWEEP --baseline egemaps_logreg`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ser_lightning.report import main
from ser_lightning.reporting.intervals import BootstrapSettings
from ser_lightning.reporting.study import build_report
from ser_lightning.reporting.study_baseline import add_baseline
from ser_lightning.utils.errors import InvalidSetting

from .helpers.corpora import small_demo_overrides
from .test_sweeps import TINY_RUN, run_train

# every test clip scored (no limit on test batches), so the jobs pair with the baseline's runs
FULL_TEST = [item for item in TINY_RUN if "limit_test_batches" not in item]


@pytest.mark.slow  # a sweep, or whole runs one after another: the slow set (CI runs it)
def test_baseline_row_on_the_folds_of_a_sweep_paired_and_reused(small_demo_root, tmp_path, capsys):
    result = run_train(
        [
            "-m",
            "data.split=kfold",
            "data.num_folds=3",
            "data.fold=0,1",
            *small_demo_overrides(small_demo_root),
            *FULL_TEST,
        ],
        tmp_path,
        tmp_path / "cache",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = next((tmp_path / "outputs" / "train" / "multiruns").iterdir())
    out = tmp_path / "report"
    arguments = [str(sweep), "--out", str(out), "--resamples", "200", "--baseline", "egemaps_logreg"]
    main([*arguments, "--compare", "baseline=none", "baseline=egemaps_logreg"])
    printed = capsys.readouterr().out
    assert printed.count("baseline egemaps_logreg [") == 2 and "reusing" not in printed

    runs = sorted(p.name for p in (out / "baseline" / "egemaps_logreg").iterdir())
    assert runs == ["0", "1"]  # one run per fold, named after the fold's job
    results = pd.read_csv(out / "results.csv")
    rows = results[results["baseline"] == "egemaps_logreg"]
    assert sorted(rows["data.fold"]) == [0, 1] and (rows["status"] == "ok").all()
    assert results["protocol/hash"].nunique() == 1  # the baseline's card matches the jobs'
    summary = pd.read_csv(out / "summary.csv").set_index("baseline")
    row = summary.loc["egemaps_logreg"]
    assert row["runs"] == 2 and row["test/ua low"] <= row["test/ua mean"] <= row["test/ua high"]
    comparison = json.loads((out / "comparison.json").read_text())
    assert len(comparison["paired_runs"]) == 2 and not comparison["unpaired_runs_left_out"]
    assert comparison["scores"]["ua"]["b"] == pytest.approx(row["test/ua mean"])
    assert "baseline=egemaps_logreg" in (out / "report.md").read_text()

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("baseline/egemaps_logreg/*/baseline.json")}
    main(arguments)
    assert capsys.readouterr().out.count("reusing") == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # without a runner, the finished runs are all the report needs
    written = build_report(sweep, out, baseline="egemaps_logreg", bootstrap=BootstrapSettings(resamples=50))
    assert pd.read_csv(written["summary"]).set_index("baseline").loc["egemaps_logreg", "runs"] == 2


def test_unknown_baseline_and_sweeps_without_configs_are_refused(tmp_path):
    jobs = pd.DataFrame([{"job": "0", "status": "ok"}])
    with pytest.raises(InvalidSetting, match="choose one of"):
        add_baseline(jobs, tmp_path, tmp_path, "wav2vec_svm")
    with pytest.raises(InvalidSetting, match="composed config"):
        add_baseline(jobs, tmp_path, tmp_path, "egemaps_logreg")
