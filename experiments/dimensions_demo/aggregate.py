"""The table of experiments/dimensions_demo: CCC per dimension (95 % speaker intervals) and UA, per task.

    .venv/bin/python experiments/dimensions_demo/aggregate.py outputs/dimensions_demo --out experiments/dimensions_demo

Reads each run's test_report/dimensions.json (scores with intervals) and summary.json (UA and its
interval), writes results.md and results.csv.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

DIMENSIONS = ("arousal", "valence", "dominance")


def cell(scores: dict, key: str) -> str:
    value = scores.get(key)
    if value is None:
        return "-"
    low, high = scores.get(f"{key}_low"), scores.get(f"{key}_high")
    return f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the folder holding one run folder per task")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows, lines = [], []
    for run in sorted(p for p in args.runs.iterdir() if (p / "summary.json").is_file()):
        summary = json.loads((run / "summary.json").read_text())
        record = json.loads((run / "test_report" / "dimensions.json").read_text())
        scores = record["scores"]
        metrics = summary.get("metrics", {})
        ua = metrics.get("test/ua")
        interval = ((summary.get("test_results") or {}).get("intervals") or {}).get("intervals", {}).get("ua")
        ua_text = (
            "-"
            if ua is None
            else f"{ua:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
        )
        row = {"task": run.name, "ua": ua, "ccc_mean": scores["ccc"]}
        row.update({f"ccc_{d}": scores[f"ccc_{d}"] for d in DIMENSIONS})
        row.update({f"ccc_{d}_{b}": scores.get(f"ccc_{d}_{b}") for d in DIMENSIONS for b in ("low", "high")})
        rows.append(row)
        lines.append(
            f"| {run.name} | {scores['ccc']:.3f} | "
            + " | ".join(cell(scores, f"ccc_{d}") for d in DIMENSIONS)
            + f" | {ua_text} | {record['bootstrap']['speakers']} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out / "results.csv", index=False, float_format="%.4f")
    header = [
        "# Dimensions on the demo corpus",
        "",
        "Test CCC per dimension (95 % speaker-bootstrap interval, 1000 resamples over the test speakers),",
        "ratings on the demo scale 1-5 from the synthesiser's design (docs/dimensions.md). Command:",
        "`bash experiments/dimensions_demo/run.sh`.",
        "",
        "| task | mean CCC | CCC arousal | CCC valence | CCC dominance | UA | test speakers |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    (args.out / "results.md").write_text("\n".join(header + lines) + "\n\n")
    print("\n".join(header + lines))


if __name__ == "__main__":
    main()
