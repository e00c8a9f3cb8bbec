"""Turn a sweep directory into a study report: `python -m ser_lightning.report SWEEP_DIR`.

Reads every job folder of a Hydra multirun (its overrides, job_status.json and summary.json)
and writes, next to the sweep or into --out:
- results.csv: one row per job (overrides, status, error, metrics);
- summary.csv and report.md: one row per configuration, metrics as mean ± std over the
  repeat keys (seed, data.fold, data.split_seed) with the number of finished jobs;
- report.png: the chosen metric per configuration, with the spread as error bars.
Failed and skipped jobs are listed with their errors; they never vanish from the report.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from rich.console import Console
from rich.table import Table

from ser_lightning.utils.errors import exits_on_user_mistake

REPEAT_KEYS = ("seed", "data.fold", "data.split_seed")
DEFAULT_METRICS = ("test/ua", "test/acc", "test/f1", "val/ua_best")


def _override_pairs(overrides: list[str]) -> dict[str, str]:
    pairs = {}
    for item in overrides:
        key, _, value = item.lstrip("+~").partition("=")
        pairs[key] = value
    return pairs


def collect_jobs(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job folder (any folder holding .hydra/overrides.yaml or job_status.json)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep directory {str(sweep_dir)!r} does not exist")
    job_dirs = sorted(
        {p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml")}
        | {p.parent for p in sweep_dir.rglob("job_status.json")},
        key=lambda p: (len(p.parts), str(p)),
    )
    rows = []
    for job in job_dirs:
        status_file, summary_file = job / "job_status.json", job / "summary.json"
        status = json.loads(status_file.read_text()) if status_file.is_file() else {}
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = status.get("overrides") or (
            yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        )
        row = {"job": str(job.relative_to(sweep_dir)), **_override_pairs(overrides or [])}
        row["status"] = status.get("status", "ok" if summary_file.is_file() else "unfinished")
        row["error"] = status.get("error", "")
        row["seconds"] = status.get("seconds", np.nan)
        if summary_file.is_file():
            summary = json.loads(summary_file.read_text())
            row.update({k: v for k, v in summary.get("metrics", {}).items()})
        rows.append(row)
    if not rows:
        raise FileNotFoundError(
            f"no job folders under {str(sweep_dir)!r}: expected Hydra multirun job folders with .hydra/overrides.yaml"
        )
    return pd.DataFrame(rows)


def configuration_columns(jobs: pd.DataFrame) -> list[str]:
    """Override keys that vary across jobs and are not repeats (seeds, folds)."""
    fixed = {"job", "status", "error", "seconds"}
    candidates = [c for c in jobs.columns if c not in fixed and "/" not in c and not c.startswith("lr-")]
    return [c for c in candidates if c not in REPEAT_KEYS and jobs[c].nunique(dropna=False) > 1]


def summarize(jobs: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    group_keys = configuration_columns(jobs)
    metrics = tuple(m for m in metrics if m in jobs.columns)
    done = jobs[jobs["status"] == "ok"]
    grouped = done.groupby(group_keys, dropna=False) if group_keys else [((), done)]
    rows = []
    for key, frame in grouped:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(group_keys, key, strict=True))
        row["runs"] = len(frame)
        for metric in metrics:
            values = frame[metric].astype(float)
            row[f"{metric} mean"] = values.mean()
            row[f"{metric} std"] = values.std(ddof=1) if len(values) > 1 else 0.0
        rows.append(row)
    summary = pd.DataFrame(rows)
    not_ok = jobs[jobs["status"] != "ok"]
    for _, job in not_ok.iterrows():
        row = {k: job.get(k) for k in group_keys}
        row["runs"] = 0
        row["status"] = f"{job['status']}: {job['error']}"
        summary = pd.concat([summary, pd.DataFrame([row])], ignore_index=True)
    return summary


def _label(row: pd.Series, keys: list[str]) -> str:
    return " ".join(f"{k.split('.')[-1]}={row[k]}" for k in keys) or "all runs"


def markdown_report(summary: pd.DataFrame, keys: list[str], metrics: tuple[str, ...], title: str) -> str:
    present = [m for m in metrics if f"{m} mean" in summary.columns]
    lines = [
        f"# {title}",
        "",
        "| " + " | ".join([*keys, "runs", *present]) + " |",
        "|" + "---|" * (len(keys) + 1 + len(present)),
    ]
    for _, row in summary.iterrows():
        cells = [str(row[k]) for k in keys] + [str(int(row["runs"]))]
        if row["runs"] == 0:
            cells += [str(row.get("status", "no finished run"))] + [""] * (len(present) - 1)
        else:
            cells += [f"{row[f'{m} mean']:.3f} ± {row[f'{m} std']:.3f}" for m in present]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("mean ± std over repeats (" + ", ".join(REPEAT_KEYS) + "); runs = finished jobs.")
    return "\n".join(lines) + "\n"


def plot_report(summary: pd.DataFrame, keys: list[str], metric: str, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = summary[summary["runs"] > 0]
    if done.empty or f"{metric} mean" not in done.columns:
        return None
    labels = [_label(row, keys) for _, row in done.iterrows()]
    figure, axis = plt.subplots(figsize=(max(5, 0.9 * len(labels) + 2), 4))
    axis.bar(
        range(len(labels)), done[f"{metric} mean"], yerr=done[f"{metric} std"], capsize=4, color="#4C72B0"
    )
    axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel(metric)
    axis.set_ylim(0, 1)
    axis.axhline(1 / 8, color="grey", linestyle="--", linewidth=1, label="chance (1/8)")
    axis.legend(loc="upper right", fontsize=8)
    axis.set_title(f"{metric} per configuration (error bars: std over repeats)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def build_report(
    sweep_dir: str | Path,
    out_dir: str | Path | None = None,
    metric: str = "test/ua",
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    title: str | None = None,
) -> dict[str, Path]:
    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir)  # first: a mistyped sweep folder must not be created as the output
    out_dir = Path(out_dir) if out_dir else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = tuple(dict.fromkeys((metric, *metrics)))
    keys = configuration_columns(jobs)
    summary = summarize(jobs, metrics)
    written = {
        "results": out_dir / "results.csv",
        "summary": out_dir / "summary.csv",
        "markdown": out_dir / "report.md",
    }
    jobs.to_csv(written["results"], index=False)
    summary.to_csv(written["summary"], index=False)
    written["markdown"].write_text(
        markdown_report(summary, keys, metrics, title or f"Study: {sweep_dir.name}")
    )
    plot = plot_report(summary, keys, metric, out_dir / "report.png")
    if plot:
        written["plot"] = plot
    return written


def print_summary(sweep_dir: Path, written: dict[str, Path], metric: str) -> None:
    console = Console()
    summary = pd.read_csv(written["summary"])
    jobs = pd.read_csv(written["results"])
    keys = configuration_columns(jobs)
    table = Table(title=f"{sweep_dir}: {metric}", title_justify="left")
    for k in [*keys, "runs", metric]:
        table.add_column(k)
    for _, row in summary.iterrows():
        value = (
            f"{row[f'{metric} mean']:.3f} ± {row[f'{metric} std']:.3f}"
            if row["runs"] > 0 and f"{metric} mean" in row
            else str(row.get("status", ""))
        )
        table.add_row(*[str(row[k]) for k in keys], str(int(row["runs"])), value)
    console.print(table)
    counts = jobs["status"].value_counts().to_dict()
    console.print(f"jobs: {', '.join(f'{v} {k}' for k, v in counts.items())}")
    console.print("written: " + ", ".join(str(p) for p in written.values()))


@exits_on_user_mistake
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a Hydra multirun folder, e.g. outputs/train/multiruns/<date>"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the report (default: the sweep folder)"
    )
    parser.add_argument("--metric", default="test/ua", help="metric to plot (default: test/ua)")
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    written = build_report(args.sweep_dir, args.out, args.metric, title=args.title)
    print_summary(args.sweep_dir, written, args.metric)


if __name__ == "__main__":
    main()
