"""Tabulate the hard and soft runs of run.sh: UA, JS divergence, accuracy by annotator agreement.

python experiments/soft_targets_demo/aggregate.py RUN_DIR [RUN_DIR ...] --out experiments/soft_targets_demo
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd


def markdown(table: pd.DataFrame) -> str:
    """The table as a Markdown table, floats to three decimals."""
    cells = [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in table.itertuples(index=False)
    ]
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def main() -> None:
    """Read each run's summary.json and test_report/agreement.json; write results.csv and results.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        summary = json.loads((run / "summary.json").read_text())
        agreement = summary["test_results"]["agreement"]
        targets, _, seed = run.name.partition("-seed")
        rows.append(
            {
                "targets": targets,
                "seed": int(seed or 0),
                "test_ua": summary["metrics"]["test/ua"],
                "js_divergence": agreement["js_divergence"],
                "accuracy_high_agreement": agreement["accuracy_high_agreement"],
                "accuracy_low_agreement": agreement["accuracy_low_agreement"],
                "high_clips": agreement["high_agreement_clips"],
                "low_clips": agreement["low_agreement_clips"],
                "abstains_low": agreement["abstains_low_agreement"],
                "abstains_high": agreement["abstains_high_agreement"],
                "ece": summary["test_results"]["calibration"]["ece"],
            }
        )
        if int(seed or 0) == 0:
            shutil.copy(run / "test_report" / "agreement.png", args.out / f"agreement_{targets}.png")
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "results.csv", index=False, float_format="%.4f")
    scores = ["test_ua", "js_divergence", "accuracy_high_agreement", "accuracy_low_agreement", "ece"]
    grouped = table.groupby("targets", sort=False)
    means = grouped[scores].mean().reset_index()
    spread = grouped[scores].std().reset_index()
    for column in scores:
        means[column] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(means[column], spread[column], strict=True)]
    means["abstains_low (of low)"] = [
        f"{a} of {n}" for a, n in zip(grouped["abstains_low"].sum(), grouped["low_clips"].sum(), strict=True)
    ]
    (args.out / "results.md").write_text(
        "# Hard against soft targets on the demo corpus (simulated votes)\n\n"
        f"Mean ± sd over {table['seed'].nunique()} seeds; abstains summed over them.\n\n"
        + markdown(means)
        + "\n\nEach run:\n\n"
        + markdown(table)
        + "\n\nabstains_*: test clips whose top probability is below min_confidence=0.5 "
        "(predict/serve answer `uncertain`), among low- and high-agreement clips.\n"
    )
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
