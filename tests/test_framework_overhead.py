"""The framework-overhead benchmark runs end to end on a tiny network and reports real timings
(slow: a real Trainer fit per round)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "benchmarks" / "framework_overhead.py"

# A few-thousand-parameter ACNT on 1 s clips: seconds per fit.
TINY_ACNT = [
    "data.duration=1.0",
    "model.net.cnn_channels=[4,8]",
    "model.net.transformer_dim=16",
    "model.net.num_heads=2",
    "model.net.ff_dim=32",
    "model.net.num_layers=1",
]

COLUMNS = [
    "model",
    "input",
    "params",
    "batch",
    "bare, ms/step (p90)",
    "Lightning, ms/step (p90)",
    "ratio",
    "rounds",
    "step only: bare, ms",
    "step only: Lightning, ms",
    "step-only ratio",
    "within 1.10×",
]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.mark.slow
def test_framework_overhead_reports_both_sides_and_their_ratio(tmp_path):
    out = tmp_path / "overhead.md"
    steps, rounds = 3, 2
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--models",
            "acnt",
            "--steps",
            str(steps),
            "--rounds",
            str(rounds),
            "--warmup",
            "1",
            "--batch",
            "4",
            "--profile",
            "--out",
            str(out),
            "--work-dir",
            str(tmp_path / "runs"),
            *TINY_ACNT,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    lines = out.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| model | input"))
    assert cells(lines[header]) == COLUMNS
    row = dict(zip(COLUMNS, cells(lines[header + 2]), strict=True))
    assert row["model"] == "`acnt`" and row["batch"] == "4"
    assert "| network forward (SERModel) |" in "\n".join(lines)

    record = json.loads(out.with_suffix(".json").read_text())
    (result,) = record["rows"]
    for side in ("bare", "lightning"):
        times = result["sides"][side]
        assert len(times["wall_s"]) == rounds and all(s > 0 for s in times["wall_s"])
        for what in ("step", "batch_to_batch"):
            assert len(times[what]["samples_ms"]) == steps * rounds
            assert all(ms > 0 for ms in times[what]["samples_ms"])
            assert times[what]["p90_ms"] >= times[what]["median_ms"] > 0
        # one batch's start to the next one's holds the whole step
        assert times["batch_to_batch"]["median_ms"] >= times["step"]["median_ms"] * 0.999
    for what in ("step", "batch_to_batch"):
        lightning, bare = (result["sides"][side][what]["median_ms"] for side in ("lightning", "bare"))
        assert result["ratios"][what]["ratio"] == pytest.approx(lightning / bare)
        assert len(result["ratios"][what]["round_ratios"]) == rounds
    assert float(row["ratio"].rstrip("×")) == pytest.approx(
        result["ratios"]["batch_to_batch"]["ratio"], abs=1e-3
    )
    assert row["within 1.10×"] in ("yes", "**no**")
