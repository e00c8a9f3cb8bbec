"""Turn a sweep directory into a study report: `python -m ser_lightning.report SWEEP_DIR`.

Reads every job folder of a Hydra multirun (its overrides, job_status.json and summary.json)
and writes, next to the sweep or into --out:
- results.csv: one row per job (overrides, status, error, metrics);
- summary.csv and report.md: one row per configuration, metrics as mean ± std over the
  repeat keys (seed, data.fold, data.split_seed) with the number of finished jobs;
- report.png: the chosen metric per configuration, with the spread as error bars.
Failed and skipped jobs are listed with their errors; they never vanish from the report.

Where the jobs kept their per-clip test predictions (`test_report/predictions.csv` with each
clip's speaker), each configuration's mean UA, WA and macro-F1 also get a 95 % interval by a
bootstrap over test speakers (each fold's speakers resampled within the fold; the number of
resamples is in the report), and `--compare A B` tests whether configuration A beats B on the
same test clips: the difference of the means with a paired-bootstrap interval and the p-value of
a paired permutation test over speakers, written to comparison.json and into report.md. A and
B are `key=value` settings of the sweep's overrides, several separated by spaces:

    python -m ser_lightning.report SWEEP_DIR --compare model=acnt model=crnn_attn
    python -m ser_lightning.report SWEEP_DIR --compare "model=acnt features=logmel" "model=acnt features=mfcc"
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

from ser_lightning.reporting.intervals import (
    DEFAULT_BOOTSTRAP,
    BootstrapSettings,
    ScoredRun,
    mean_over_runs_bootstrap,
    paired_comparison,
)
from ser_lightning.utils.errors import InvalidSetting, exits_on_user_mistake
from ser_lightning.utils.jobs import STATUS_FILE, read_status

REPEAT_KEYS = ("seed", "data.fold", "data.split_seed")
DEFAULT_METRICS = ("test/ua", "test/acc", "test/f1", "val/ua_best")
# summary metric -> its score in reporting/intervals.py (INTERVAL_SCORES)
INTERVAL_OF = {"test/ua": "ua", "test/acc": "accuracy", "test/f1": "macro_f1"}
PREDICTIONS = Path("test_report") / "predictions.csv"
# each job's note on speakers (from summary.json), named with "/" so they never count as settings
SPEAKER_INDEPENDENT = "speakers/independent"
HEARD_TEST_CLIPS = "speakers/test_clips_with_training_speaker"
TEST_CLIPS = "speakers/test_clips"


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
        | {p.parent for p in sweep_dir.rglob(STATUS_FILE)},
        key=lambda p: (len(p.parts), str(p)),
    )
    rows = []
    for job in job_dirs:
        summary_file = job / "summary.json"
        status = read_status(job)
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
            speakers = summary.get("speakers") or {}
            if speakers:
                row[SPEAKER_INDEPENDENT] = bool(speakers.get("speaker_independent"))
                row[HEARD_TEST_CLIPS] = speakers.get("test_clips_with_training_speaker")
                row[TEST_CLIPS] = speakers.get("test_clips")
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


def scored_run(sweep_dir: Path, job: str) -> ScoredRun | None:
    """A job's per-clip test predictions, or None when it kept none with the clips' speakers."""
    path = Path(sweep_dir) / job / PREDICTIONS
    if not path.is_file():
        return None
    frame = pd.read_csv(path, dtype={"speaker": str, "file": str})
    if "speaker" not in frame:
        return None
    labels = [c[len("prob_") :] for c in frame.columns if c.startswith("prob_")]
    index = {name: k for k, name in enumerate(labels)}
    y_true = frame["true"].map(index).to_numpy()
    y_pred = frame[[f"prob_{name}" for name in labels]].to_numpy().argmax(axis=1)
    return ScoredRun(job, frame["file"].tolist(), y_true, y_pred, frame["speaker"].tolist(), len(labels))


def summarize(
    jobs: pd.DataFrame,
    metrics: tuple[str, ...],
    sweep_dir: Path | None = None,
    bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP,
) -> pd.DataFrame:
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
        if SPEAKER_INDEPENDENT in frame and frame[SPEAKER_INDEPENDENT].notna().any():
            row["speaker-independent"] = bool(frame[SPEAKER_INDEPENDENT].fillna(True).astype(bool).all())
            row["test clips heard in training"] = int(frame[HEARD_TEST_CLIPS].fillna(0).sum())
            row["test clips"] = int(frame[TEST_CLIPS].fillna(0).sum())
        runs = [scored_run(sweep_dir, job) for job in frame["job"]] if sweep_dir is not None else []
        if runs and all(r is not None for r in runs):
            intervals = mean_over_runs_bootstrap(runs, bootstrap)
            row["interval speakers"] = sum(len(r.speaker_ids) for r in runs)
            row["interval resamples"] = bootstrap.resamples
            for metric, score in INTERVAL_OF.items():
                interval = intervals[score]["interval"]
                if metric in metrics and interval is not None:
                    row[f"{metric} low"], row[f"{metric} high"] = interval
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
            cells += [
                f"{row[f'{m} mean']:.3f} ± {row[f'{m} std']:.3f}{_interval_cell(row, m)}" for m in present
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("mean ± std over repeats (" + ", ".join(REPEAT_KEYS) + "); runs = finished jobs.")
    if "speaker-independent" in summary.columns:
        dependent = summary[summary["speaker-independent"].eq(False)]
        for _, row in dependent.iterrows():
            lines.append(
                f"**Speaker-dependent protocol** ({_label(row, keys)}): {int(row['test clips heard in training'])} "
                f"of {int(row['test clips'])} test clips have their speaker in the training split; these scores "
                "are optimistic for new speakers."
            )
    if "interval resamples" not in summary.columns or summary["interval resamples"].isna().all():
        lines.append(
            "No speaker intervals: the jobs kept no per-clip test predictions with speakers "
            f"({PREDICTIONS} with a speaker column)."
        )
    else:
        resamples = int(summary["interval resamples"].dropna().iloc[0])
        lines.append(
            f"[low, high]: 95 % interval of the mean by a bootstrap over test speakers ({resamples} resamples; "
            "each run's speakers resampled within the run, all clips of a drawn speaker)."
        )
    return "\n".join(lines) + "\n"


def _interval_cell(row: pd.Series, metric: str) -> str:
    low, high = row.get(f"{metric} low"), row.get(f"{metric} high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return ""
    return f" [{low:.3f}, {high:.3f}]"


def parse_selection(text: str) -> dict[str, str]:
    """`key=value key=value` (a configuration named by its overrides) as a dict."""
    pairs = {}
    for item in text.split():
        key, sep, value = item.lstrip("+~").partition("=")
        if not sep or not key:
            raise InvalidSetting(
                f"--compare takes key=value settings of the sweep, e.g. model=acnt; got {item!r}"
            )
        pairs[key] = value
    if not pairs:
        raise InvalidSetting(
            "--compare needs two configurations, each as key=value settings, e.g. model=acnt"
        )
    return pairs


def _selected(jobs: pd.DataFrame, selection: dict[str, str], name: str) -> pd.DataFrame:
    missing = [k for k in selection if k not in jobs.columns]
    if missing:
        raise InvalidSetting(
            f"--compare {name}: the sweep has no setting {missing}; its settings: {configuration_columns(jobs)}"
        )
    mask = np.ones(len(jobs), dtype=bool)
    for key, value in selection.items():
        mask &= jobs[key].astype(str).to_numpy() == value
    chosen = jobs[mask & (jobs["status"] == "ok").to_numpy()]
    if chosen.empty:
        raise InvalidSetting(f"--compare {name}: no finished job has {selection}")
    others = [
        c for c in configuration_columns(jobs) if c not in selection and chosen[c].nunique(dropna=False) > 1
    ]
    if others:
        raise InvalidSetting(
            f"--compare {name}: {selection} matches several configurations (they differ in {others}); "
            "add those settings"
        )
    return chosen


def compare(
    jobs: pd.DataFrame,
    sweep_dir: Path,
    a: str,
    b: str,
    bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP,
) -> dict:
    """Configuration `a` against `b` on the same test clips: jobs paired by their repeat keys
    (fold, seed, split seed), differences of the means with intervals and p-values."""
    chosen = {name: _selected(jobs, parse_selection(text), name) for name, text in (("A", a), ("B", b))}
    repeat = [k for k in REPEAT_KEYS if k in jobs.columns]
    keyed = {
        name: {tuple(str(row[k]) for k in repeat): row["job"] for _, row in frame.iterrows()}
        for name, frame in chosen.items()
    }
    if len(keyed["A"]) != len(chosen["A"]) or len(keyed["B"]) != len(chosen["B"]):
        raise InvalidSetting(
            "--compare: two jobs of one configuration share their fold and seed; cannot pair them"
        )
    pairs = sorted(set(keyed["A"]) & set(keyed["B"]))
    unpaired = sorted(set(keyed["A"]) ^ set(keyed["B"]))
    if not pairs:
        raise InvalidSetting(f"--compare: A and B have no run on the same fold and seed ({repeat})")
    runs = {name: [scored_run(sweep_dir, keyed[name][key]) for key in pairs] for name in ("A", "B")}
    lacking = [r for name in runs for r, run in zip(pairs, runs[name], strict=True) if run is None]
    if lacking:
        raise InvalidSetting(
            "--compare needs each job's per-clip predictions with speakers (test_report/predictions.csv, "
            f"written by this ser_lightning's train); missing for runs {lacking}"
        )
    scores = paired_comparison(runs["A"], runs["B"], bootstrap)
    return {
        "A": a,
        "B": b,
        "paired_runs": [dict(zip(repeat, key, strict=True)) for key in pairs],
        "unpaired_runs_left_out": [dict(zip(repeat, key, strict=True)) for key in unpaired],
        "speakers": sum(len(r.speaker_ids) for r in runs["A"]),
        "clips": sum(len(r.files) for r in runs["A"]),
        "resamples": bootstrap.resamples,
        "seed": bootstrap.seed,
        "method": "difference of the means over paired runs; interval: paired bootstrap over speakers; "
        "p: two-sided paired permutation test over speakers",
        "scores": scores,
    }


def comparison_markdown(result: dict) -> str:
    lines = [
        "",
        f"## Paired comparison: A = `{result['A']}` vs B = `{result['B']}`",
        "",
        f"{len(result['paired_runs'])} paired runs on the same test clips ({result['clips']} clips of "
        f"{result['speakers']} speakers); {result['resamples']} resamples, seed {result['seed']}.",
        "",
        "| score | A | B | A − B | 95 % interval | p |",
        "|---|---|---|---|---|---|",
    ]
    for name, score in result["scores"].items():
        low, high = score["interval"]
        lines.append(
            f"| {name} | {score['a']:.3f} | {score['b']:.3f} | {score['difference']:+.3f} | "
            f"[{low:+.3f}, {high:+.3f}] | {score['p_value']:.4f} |"
        )
    lines += ["", result["method"] + "."]
    if result["unpaired_runs_left_out"]:
        lines.append(f"Left out (no partner run): {result['unpaired_runs_left_out']}.")
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
    compare_configurations: tuple[str, str] | None = None,
    bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP,
) -> dict[str, Path]:
    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir)  # first: a mistyped sweep folder must not be created as the output
    comparison = (
        compare(jobs, sweep_dir, *compare_configurations, bootstrap) if compare_configurations else None
    )
    out_dir = Path(out_dir) if out_dir else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = tuple(dict.fromkeys((metric, *metrics)))
    keys = configuration_columns(jobs)
    summary = summarize(jobs, metrics, sweep_dir, bootstrap)
    written = {
        "results": out_dir / "results.csv",
        "summary": out_dir / "summary.csv",
        "markdown": out_dir / "report.md",
    }
    jobs.to_csv(written["results"], index=False)
    summary.to_csv(written["summary"], index=False)
    markdown = markdown_report(summary, keys, metrics, title or f"Study: {sweep_dir.name}")
    if comparison is not None:
        written["comparison"] = out_dir / "comparison.json"
        written["comparison"].write_text(json.dumps(comparison, indent=2))
        markdown += comparison_markdown(comparison)
    written["markdown"].write_text(markdown)
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
            f"{row[f'{metric} mean']:.3f} ± {row[f'{metric} std']:.3f}{_interval_cell(row, metric)}"
            if row["runs"] > 0 and f"{metric} mean" in row
            else str(row.get("status", ""))
        )
        table.add_row(*[str(row[k]) for k in keys], str(int(row["runs"])), value)
    console.print(table)
    counts = jobs["status"].value_counts().to_dict()
    console.print(f"jobs: {', '.join(f'{v} {k}' for k, v in counts.items())}")
    if "speaker-independent" in summary.columns:
        for _, row in summary[summary["speaker-independent"].eq(False)].iterrows():
            console.print(
                f"[bold red]speaker-dependent protocol[/bold red] ({_label(row, keys)}): "
                f"{int(row['test clips heard in training'])} of {int(row['test clips'])} test clips have their "
                "speaker in the training split"
            )
    if "interval resamples" in summary.columns and summary["interval resamples"].notna().any():
        console.print(
            f"[low, high]: 95 % interval of the mean, bootstrap over test speakers "
            f"({int(summary['interval resamples'].dropna().iloc[0])} resamples)"
        )
    if "comparison" in written:
        result = json.loads(written["comparison"].read_text())
        table = Table(
            title=f"A = {result['A']}  vs  B = {result['B']} ({len(result['paired_runs'])} paired runs)"
        )
        for column in ("score", "A", "B", "A − B", "95 % interval", "p"):
            table.add_column(column)
        for name, score in result["scores"].items():
            table.add_row(
                name,
                f"{score['a']:.3f}",
                f"{score['b']:.3f}",
                f"{score['difference']:+.3f}",
                f"[{score['interval'][0]:+.3f}, {score['interval'][1]:+.3f}]",
                f"{score['p_value']:.4f}",
            )
        console.print(table)
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
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        default=None,
        help="paired test of configuration A against B, each as key=value settings (e.g. model=acnt model=crnn_attn)",
    )
    parser.add_argument(
        "--resamples", type=int, default=BootstrapSettings.resamples, help="bootstrap resamples"
    )
    parser.add_argument("--seed", type=int, default=BootstrapSettings.seed, help="seed of the resampling")
    args = parser.parse_args(argv)
    written = build_report(
        args.sweep_dir,
        args.out,
        args.metric,
        title=args.title,
        compare_configurations=tuple(args.compare) if args.compare else None,
        bootstrap=BootstrapSettings(resamples=args.resamples, seed=args.seed),
    )
    print_summary(args.sweep_dir, written, args.metric)


if __name__ == "__main__":
    main()
