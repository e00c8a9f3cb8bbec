"""The baselines' table: mean ± std over folds and the 95 % interval of the mean per configuration.

    python experiments/baselines_demo/aggregate.py outputs/baselines_demo/egemaps outputs/baselines_demo/compare

Reads every job's baseline.json and test/predictions.csv under the given sweep folders, groups
the jobs by (features, classifier) and scores each group with the study report's stratified
speaker bootstrap (ser_lightning.reporting.intervals.mean_over_runs_bootstrap). The feature cost
per clip is timed here too: openSMILE functionals of one 3 s clip at 16 kHz, in one process.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ser_lightning.features.opensmile_features import clip_features
from ser_lightning.reporting.intervals import ScoredRun, mean_over_runs_bootstrap


def scored_runs(sweeps: list[Path]) -> dict[tuple[str, str], list[tuple[dict, ScoredRun]]]:
    groups: dict[tuple[str, str], list[tuple[dict, ScoredRun]]] = {}
    for sweep in sweeps:
        for summary_path in sorted(sweep.glob("*/baseline.json")):
            summary = json.loads(summary_path.read_text())
            predictions = pd.read_csv(summary_path.parent / "test" / "predictions.csv")
            labels = summary["protocol_card"]["labels"]
            index = {name: i for i, name in enumerate(labels)}
            run = ScoredRun(
                name=str(summary_path.parent),
                files=predictions["file"].tolist(),
                y_true=predictions["true"].map(index).to_numpy(),
                y_pred=predictions["predicted"].map(index).to_numpy(),
                speakers=predictions["speaker"].astype(str).tolist(),
                num_classes=len(labels),
            )
            key = (summary["features"]["feature_set"], summary["classifier"]["name"])
            groups.setdefault(key, []).append((summary, run))
    return groups


def feature_cost(repeats: int = 20) -> dict[str, float]:
    wave = (np.random.default_rng(0).standard_normal(48000) * 0.1).astype(np.float32)
    cost = {}
    for feature_set in ("egemaps", "compare"):
        clip_features(wave, 16000, feature_set, "functionals")  # builds the extractor
        started = time.perf_counter()
        for _ in range(repeats):
            clip_features(wave, 16000, feature_set, "functionals")
        cost[feature_set] = (time.perf_counter() - started) / repeats
    return cost


def main(sweeps: list[Path]) -> None:
    groups = scored_runs(sweeps)
    print(
        "| features | classifier | folds | UA mean ± std [95 % CI] | WA mean | macro-F1 mean | fit s/fold | protocol hash |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (features, classifier), members in sorted(groups.items()):
        runs = [run for _, run in members]
        scores = mean_over_runs_bootstrap(runs)
        uas = [summary["metrics"]["test"]["ua"] for summary, _ in members]
        low, high = scores["ua"]["interval"]
        fit = np.mean([summary["cost"]["fit_seconds"] for summary, _ in members])
        hashes = sorted({summary["protocol_card"]["hash"] for summary, _ in members})
        print(
            f"| {features} | {classifier} | {len(runs)} | {np.mean(uas):.3f} ± {np.std(uas, ddof=1):.3f} "
            f"[{low:.3f}, {high:.3f}] | {scores['accuracy']['mean']:.3f} | {scores['macro_f1']['mean']:.3f} "
            f"| {fit:.2f} | {', '.join(hashes)} |"
        )
    print()
    for feature_set, seconds in feature_cost().items():
        print(
            f"- feature cost, {feature_set} functionals: {1000 * seconds:.1f} ms per 3 s clip (one process)"
        )


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
