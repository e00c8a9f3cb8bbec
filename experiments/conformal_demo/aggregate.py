"""Tabulate the conformal sets of a calibration=conformal sweep: coverage and set size on the test speakers.

For each job (fold) of the sweep: the validation clips' calibrated probabilities (`val_eval/`,
written by `eval split=val`) give the threshold of each target (`ser_lightning.conformal`, the
code train runs); the test report's probabilities (`test_report/predictions.csv`) give the
coverage, its Clopper-Pearson interval, the mean set size and whether it holds, overall, per gender
and per speaker (`ser_lightning.reporting.conformal`). The 90 % row must match what the training
run stored and reported; the script checks it.

    python experiments/conformal_demo/aggregate.py outputs/conformal_demo/multiruns/<date> --out experiments/conformal_demo
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from ser_lightning.checkpoint import read_checkpoint  # noqa: E402
from ser_lightning.conformal import fit_conformal  # noqa: E402
from ser_lightning.reporting.conformal import conformal_summary  # noqa: E402

TARGETS = (0.8, 0.9, 0.95)


def probabilities_of(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    labels = [c.removeprefix("prob_") for c in frame if c.startswith("prob_")]
    probabilities = frame[[f"prob_{name}" for name in labels]].to_numpy()
    y_true = frame["true"].map({name: k for k, name in enumerate(labels)}).to_numpy()
    return probabilities, y_true, labels


def job_rows(job: Path) -> list[dict]:
    fold = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["data"]["fold"]
    val = pd.read_csv(job / "val_eval" / "predictions.csv", dtype={"speaker": str})
    test = pd.read_csv(job / "test_report" / "predictions.csv", dtype={"speaker": str})
    p_val, y_val, labels = probabilities_of(val)
    p_test, y_test, _ = probabilities_of(test)
    stored = read_checkpoint(next((job / "checkpoints").glob("best-*.ckpt")))["hyper_parameters"][
        "calibration"
    ]
    reported = json.loads((job / "test_report" / "metrics.json").read_text())
    rows = []
    for target in TARGETS:
        record = fit_conformal(p_val, y_val, target, speakers=val["speaker"])
        summary, table, _ = conformal_summary(p_test, y_test, record, test[["speaker", "gender"]], labels)
        if target == stored["conformal"]["coverage"]:  # the training run's own threshold and report
            assert abs(record["threshold"] - stored["conformal"]["threshold"]) < 1e-5, (job, record, stored)
            assert abs(summary["coverage"] - reported["conformal"]["coverage"]) < 1e-9
        speakers = table[table["by"] == "speaker"]
        rows.append(
            {
                "fold": int(fold),
                "target": target,
                "val_clips": record["files"],
                "val_speakers": record["speakers"],
                "test_clips": len(test),
                "test_ua": reported["ua"],
                "min_probability": 1 - record["threshold"],
                "coverage": summary["coverage"],
                "ci_low": summary["ci_low"],
                "ci_high": summary["ci_high"],
                "holds": summary["holds"],
                "mean_set_size": summary["mean_set_size"],
                "singletons": summary["set_sizes"].get("1", 0) / len(test),
                "genders_holding": summary.get("genders_holding", ""),
                "speakers_holding": summary.get("speakers_holding", ""),
                "speaker_coverage_min": float(speakers["coverage"].min()),
                "speaker_coverage_max": float(speakers["coverage"].max()),
            }
        )
    return rows


def plot(results: pd.DataFrame, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for fold, rows in results.groupby("fold"):
        left.errorbar(
            rows["target"],
            rows["coverage"],
            yerr=[rows["coverage"] - rows["ci_low"], rows["ci_high"] - rows["coverage"]],
            marker="o",
            capsize=3,
            label=f"fold {fold}",
        )
        right.plot(rows["target"], rows["mean_set_size"], marker="o", label=f"fold {fold}")
    grid = np.linspace(0.78, 0.97, 2)
    left.plot(grid, grid, "k--", linewidth=1, label="target")
    left.set_xlabel("target coverage (fitted on the validation speakers)")
    left.set_ylabel("coverage on the test speakers (95 % interval)")
    left.legend()
    right.set_xlabel("target coverage")
    right.set_ylabel("mean set size (emotions of 8)")
    fig.suptitle("Conformal prediction sets on the demo corpus (EmoBox folds, unseen test speakers)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: pd.DataFrame, sweep: Path) -> str:
    lines = [
        "# Conformal prediction sets on the demo corpus",
        "",
        f"Sweep: `{sweep}` (`bash experiments/conformal_demo/run.sh`). Thresholds fitted on each fold's",
        "validation speakers (none of them a training or test speaker), scored on its test speakers.",
        "`holds`: the upper end of the 95 % Clopper-Pearson interval of the coverage is at or above the",
        "target. Guarantee: between the target and target + 1/(n+1) on average over draws.",
        "",
        "| fold | target | val clips (speakers) | test UA | min p in set | coverage [95 % CI] | holds | mean set size "
        "| singletons | genders holding | speakers holding | speaker coverage min-max |",
        "|---:|---:|---:|---:|---:|---|:---:|---:|---:|---|---|---|",
    ]
    for r in results.itertuples():
        lines.append(
            f"| {r.fold} | {r.target:.2f} | {r.val_clips} ({r.val_speakers}) | {r.test_ua:.3f} | {r.min_probability:.3f} "
            f"| {r.coverage:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] | {'yes' if r.holds else 'no'} "
            f"| {r.mean_set_size:.2f} | {r.singletons:.0%} | {r.genders_holding} | {r.speakers_holding} "
            f"| {r.speaker_coverage_min:.2f}-{r.speaker_coverage_max:.2f} |"
        )
    if results["fold"].nunique() < 2:
        return "\n".join(lines) + "\n\n![coverage](coverage.png)\n"
    mean = results.groupby("target")[["coverage", "mean_set_size", "singletons"]].agg(["mean", "std"])
    lines += [
        "",
        "Mean ± std over folds:",
        "",
        "| target | coverage | mean set size | singletons |",
        "|---:|---|---|---|",
    ]
    for target, r in mean.iterrows():
        lines.append(
            f"| {target:.2f} | {r[('coverage', 'mean')]:.3f} ± {r[('coverage', 'std')]:.3f} "
            f"| {r[('mean_set_size', 'mean')]:.2f} ± {r[('mean_set_size', 'std')]:.2f} "
            f"| {r[('singletons', 'mean')]:.0%} ± {r[('singletons', 'std')]:.0%} |"
        )
    return "\n".join(lines) + "\n\n![coverage](coverage.png)\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    jobs = sorted(p.parent.parent for p in args.sweep.glob("*/val_eval/predictions.csv"))
    if not jobs:
        raise SystemExit(f"no job of {args.sweep} has val_eval/predictions.csv: run `eval split=val` first")
    results = pd.DataFrame([row for job in jobs for row in job_rows(job)]).sort_values(["fold", "target"])
    args.out.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out / "results.csv", index=False, float_format="%.4f")
    plot(results, args.out / "coverage.png")
    (args.out / "results.md").write_text(markdown(results, args.sweep))
    print(markdown(results, args.sweep))


if __name__ == "__main__":
    main()
