"""Collect what run.sh measured into one markdown report (gpu_report.md).

    python experiments/benchmarks/gpu/summarize.py --work WORK --out gpu_report.md [--smoke 1] [--elapsed S]

Reads the work folder run.sh filled (steps.tsv, prepare*.json, a_wall.tsv and the runs' own
summary.json and metrics.csv, the throughput tables and rows, the data-pipeline table, the
recipe budget and the recipe report) and writes the summary first, then each part. A part that
failed or was skipped says so instead of its table.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from datetime import UTC, datetime
from pathlib import Path

TARGET_ACNT_SECONDS = 30.0  # 100 ACNT epochs on 1440 clips, process start to exit
TARGET_DATA_WAIT = 0.02  # share of step time waiting for data


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def tsv(path: Path) -> list[list[str]]:
    try:
        return [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    except OSError:
        return []


def epochs_run(run_dir: Path) -> int | None:
    """The number of training epochs the run's CSV log saw."""
    epochs = set()
    for metrics in run_dir.rglob("metrics.csv"):
        with metrics.open() as f:
            for row in csv.DictReader(f):
                if row.get("epoch", "") not in ("", None) and row.get(
                    "train/loss_epoch", row.get("val/ua", "")
                ):
                    epochs.add(int(float(row["epoch"])))
    return max(epochs) + 1 if epochs else None


def acnt_section(work: Path) -> tuple[list[str], dict, int | None]:
    rows = tsv(work / "a_wall.tsv")
    epochs = next((n for n in (epochs_run(work / "runs" / f"a_acnt_{p}") for p, _, _ in rows) if n), None)
    lines = [
        f"## a. {epochs or '?'} ACNT epochs through `python -m ser_lightning.train`",
        "",
        f"`model=acnt features=logmel data=demo trainer=gpu trainer.max_epochs={epochs} trainer.min_epochs={epochs} "
        f"callbacks.early_stopping.patience={epochs} data.placement=<placement> [model.compile=true]`: validation every epoch, "
        "checkpoints, temperature calibration, test and summary; caches already built (prepare). "
        "Wall time from process start to exit.",
        "",
        "| data.placement | compiled | exit | wall s (process) | run s (summary) | epochs | test UA | best val UA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    walls = {}
    for variant, rc, wall in rows:
        run_dir = work / "runs" / f"a_acnt_{variant}"
        placement, compiled = variant.removesuffix("_compiled"), variant.endswith("_compiled")
        summary = read_json(run_dir / "summary.json") or {}
        metrics = summary.get("metrics", {})
        ua, best = metrics.get("test/ua"), metrics.get("val/ua_best")
        lines.append(
            f"| {placement} | {'yes' if compiled else 'no'} | {rc} | **{float(wall):.1f}** | {summary.get('seconds', float('nan')):.1f} | "
            f"{epochs_run(run_dir) or '?'} | {ua if ua is None else f'{ua:.3f}'} | "
            f"{best if best is None else f'{best:.3f}'} |"
        )
        if rc == "0":
            walls[variant] = float(wall)
    return lines, walls, epochs


def sweep_jobs(sweep: Path) -> list[str]:
    """One row per job of the recipe sweep: its settings, status, epochs run and seconds."""
    jobs = sorted((d for d in sweep.glob("*") if d.name.isdigit()), key=lambda d: int(d.name))
    if not jobs:
        return []
    lines = [
        "| job | experiment | split | seed | status | epochs run | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for job in jobs:
        overrides = {}
        try:
            for item in (job / ".hydra" / "overrides.yaml").read_text().splitlines():
                key, _, value = item.lstrip("- ").partition("=")
                overrides[key] = value
        except OSError:
            pass
        record = read_json(job / "job_status.json") or {}
        status = record.get("status", "unfinished")
        seconds = f"{record['seconds']:.0f}" if "seconds" in record else "–"
        lines.append(
            f"| {job.name} | {overrides.get('experiment', '?')} | {overrides.get('data.split', '?')} | "
            f"{overrides.get('seed', '?')} | {status} | {epochs_run(job) or '–'} | {seconds} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", default="0")
    parser.add_argument("--elapsed", type=int, default=None)
    args = parser.parse_args()
    work = args.work
    smoke = args.smoke == "1"

    machine = read_text(work / "logs" / "nvidia_smi.csv") or f"{platform.machine()}, no GPU"
    lines = [
        "# GPU benchmark" + (" (SMOKE run on CPU: tiny budgets, numbers mean nothing)" if smoke else ""),
        "",
        f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `experiments/benchmarks/gpu/run.sh`"
        + (f" in {args.elapsed} s" if args.elapsed is not None else "")
        + ".",
        "",
        "```",
        machine,
        read_text(work / "logs" / "machine.txt") or "",
        "```",
        "",
    ]

    acnt_lines, walls, epochs_a = acnt_section(work)
    device_rows = (read_json(work / "b_throughput_device.json") or {}).get("rows", [])
    host_rows = (read_json(work / "b_throughput_host.json") or {}).get("rows", [])
    pipeline = read_text(work / "d_data_pipeline.md")

    prepare = read_json(work / "prepare.json")
    clips = prepare["clips"] if prepare else "?"
    lines += ["## Summary", "", "| target | measured | |", "|---|---|---|"]
    if "device" in walls:
        met = "met" if walls["device"] < TARGET_ACNT_SECONDS else "not met"
        host = f"; data.placement=host {walls['host']:.1f} s" if "host" in walls else ""
        if "device_compiled" in walls:
            host += f"; device with model.compile=true {walls['device_compiled']:.1f} s"
        lines.append(
            f"| {epochs_a} ACNT epochs, {clips} clips, process start to exit < {TARGET_ACNT_SECONDS:.0f} s | "
            f"data.placement=device **{walls['device']:.1f} s**{host} | {met} |"
        )
    else:
        lines.append(f"| 100 ACNT epochs < {TARGET_ACNT_SECONDS:.0f} s | not measured (see steps) | – |")
    for rows, path in ((device_rows, "rows on the device"), (host_rows, "DataLoader")):
        if not rows:
            continue
        worst = max(rows, key=lambda r: r["data_wait_share"])
        met = "met" if worst["data_wait_share"] < TARGET_DATA_WAIT else "not met"
        lines.append(
            f"| data wait < {100 * TARGET_DATA_WAIT:.0f} % of step time ({path}) | "
            f"at most **{100 * worst['data_wait_share']:.1f} %** ({worst['model']}, {worst['precision']}) | {met} |"
        )
    if device_rows:
        fastest = max(device_rows, key=lambda r: r["clips_per_second"])
        lines.append(
            f"| throughput (rows on the device) | up to **{fastest['clips_per_second']:.0f} clips/s** "
            f"({fastest['model']}, {fastest['precision']}) | – |"
        )
    budget = read_json(work / "budget.json")
    if budget:
        epochs = (
            "the recipes' own epochs" if budget["epochs"] is None else f"at most {budget['epochs']} epochs"
        )
        lines.append(
            f"| seed-recipe study | {budget['jobs']} jobs, seeds {budget['seeds']}, {epochs}, "
            f"time share {budget['max_time_seconds']} s per job ({budget['epochs_source']}) | – |"
        )
    lines.append("")

    lines += ["## Steps", "", "| step | exit | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {rc} | {seconds} |" for name, rc, seconds in tsv(work / "steps.tsv")]
    lines.append("")

    recipes = read_json(work / "prepare_recipes.json")
    lines += ["## Corpus and caches (prepare)", ""]
    if prepare:
        s = prepare["seconds"]
        lines.append(
            f"Demo corpus, {prepare['clips']} clips ({prepare['actors']} actors): generated in {s['corpus']:.1f} s; "
            f"waveform + log-mel caches of `model=acnt features=logmel` built in {s['logmel']:.1f} s (cold)."
        )
    if recipes:
        built = ", ".join(f"{k} {v:.1f} s" for k, v in recipes["seconds"].items() if k.startswith("seed"))
        lines.append(f"Seed recipes' caches (their rates, lengths, features and offline copies): {built}.")
    lines += [""] + acnt_lines + [""]

    lines += ["## b. Training throughput on log-mel", ""]
    for name in ("b_throughput_device", "b_throughput_host"):
        table = read_text(work / f"{name}.md")
        lines += [
            table.replace("\n## ", "\n### ") if table else f"`{name}`: no table (see steps and logs)",
            "",
        ]
    lines += [
        "s/epoch is the mean of the epochs after the first; clips/s and data wait are over every timed step; "
        "peak GPU memory is `torch.cuda.max_memory_allocated` / `max_memory_reserved` during the fit.",
        "",
    ]

    lines += ["## d. Seed-style Dataset baseline beside ours (data work per epoch)", ""]
    lines += [
        pipeline.replace("\n## ", "\n### ").lstrip("# ") if pipeline else "no table (see steps and logs)",
        "",
    ]

    lines += ["## c. Seed recipes: speaker-independent vs random split", ""]
    if budget:
        lines += [
            f"Budget: {budget['seconds']:.0f} s for the sweep, {budget['overhead_per_job']:.0f} s overhead per job; "
            f"{budget['jobs']} jobs (5 recipes × 2 splits × seeds {budget['seeds']}); epochs: "
            + (
                "the recipes' own (early stopping on)"
                if budget["epochs"] is None
                else f"at most {budget['epochs']}"
            )
            + f"; {budget['epochs_source']}; time share `trainer.max_time` {budget['max_time_seconds']} s per job; "
            f"estimated {budget['estimated_seconds']:.0f} s.",
            "",
            "| recipe | own epochs | estimated s/epoch | expected epochs |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r} | {budget['own_epochs'][r]} | {budget['epoch_estimates'][r]:.2f} | "
            f"{budget.get('expected_epochs', {}).get(r, '?')} |"
            for r in budget["own_epochs"]
        ]
        lines.append("")
    lines += sweep_jobs(work / "seed_sweep")
    report = read_text(work / "seed_report" / "report.md")
    lines += [
        report.replace("\n# ", "\n### ").lstrip("# ") if report else "no report (see steps and logs)",
        "",
    ]

    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
