"""Calibration before and after temperature scaling, per job of a sweep: `python calibration_table.py SWEEP`.

Reads each job's test_report/metrics.json (written by `ser_lightning.train`) and prints a markdown
table: the temperature fitted on the validation split, and the test ECE and NLL before (T = 1)
and after, with their means per configuration.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import yaml


def main(sweep: Path) -> None:
    rows = []
    for metrics_file in sorted(sweep.glob("*/test_report/metrics.json")):
        job = metrics_file.parent.parent
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        settings = dict(item.lstrip("+").split("=", 1) for item in overrides if "=" in item)
        calibration = json.loads(metrics_file.read_text()).get("calibration", {})
        if "ece_uncalibrated" not in calibration:
            continue
        rows.append(
            {
                "model": settings.get("model", ""),
                "fold": int(settings.get("data.fold", 0)),
                "temperature": calibration["temperature"],
                "ECE before": calibration["ece_uncalibrated"],
                "ECE after": calibration["ece"],
                "NLL before": calibration["nll_uncalibrated"],
                "NLL after": calibration["nll"],
            }
        )
    table = pd.DataFrame(rows).sort_values(["model", "fold"])
    means = table.groupby("model", as_index=False).mean(numeric_only=True).assign(fold="mean")
    print(f"# Calibration before and after temperature scaling ({sweep.name})\n")
    print(
        "Temperature fitted on each fold's validation actors; ECE (15 bins) and NLL on the fold's test actors.\n"
    )
    frame = pd.concat([table, means])
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---|" * len(frame.columns))
    for _, row in frame.iterrows():
        cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
