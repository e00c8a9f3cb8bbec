"""The study report of a sweep, as `python -m ser_lightning.report SWEEP_DIR` writes it.

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
B are `key=value` settings of the sweep's overrides, several separated by spaces. Jobs on a corpus
with annotator votes add the agreement section's mean JS divergence and accuracy on high- and
low-agreement clips (`AGREEMENT_METRICS`), with intervals from each job's
`test_report/agreement.csv`; dimensional and multitask jobs add CCC (`DIMENSION_METRICS`).

    python -m ser_lightning.report SWEEP_DIR --compare model=acnt model=crnn_attn
    python -m ser_lightning.report SWEEP_DIR --compare "model=acnt features=logmel" "model=acnt features=mfcc"
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.reporting.agreement_intervals import AGREEMENT_SCORES, mean_agreement_over_runs
from ser_lightning.reporting.dimension_report import mean_ccc_over_runs
from ser_lightning.reporting.intervals import DEFAULT_BOOTSTRAP, BootstrapSettings, mean_over_runs_bootstrap
from ser_lightning.reporting.study_baseline import add_baseline, baseline_note
from ser_lightning.reporting.study_comparison import compare, comparison_markdown
from ser_lightning.reporting.study_jobs import (
    HEARD_TEST_CLIPS,
    PREDICTIONS,
    REPEAT_KEYS,
    SPEAKER_INDEPENDENT,
    TEST_CLIPS,
    collect_jobs,
    configuration_columns,
    scored_run,
)
from ser_lightning.reporting.study_protocols import PROTOCOL, check_one_protocol

# dimensional and multitask jobs (ser_lightning.dimensions): mean CCC and each dimension's
DIMENSION_METRICS = ("test/ccc", *(f"test/ccc_{name}" for name in DIMENSIONS))
# jobs on a corpus with annotator votes: the agreement section's scores (reporting/agreement.py)
AGREEMENT_METRICS = tuple(f"test/{name}" for name in AGREEMENT_SCORES)
DEFAULT_METRICS = ("test/ua", "test/acc", "test/f1", "val/ua_best", *DIMENSION_METRICS, *AGREEMENT_METRICS)
DIMENSION_PREDICTIONS = Path("test_report") / "dimension_predictions.csv"
AGREEMENT_CLIPS = Path("test_report") / "agreement.csv"
# summary metric -> its score in reporting/intervals.py (INTERVAL_SCORES)
INTERVAL_OF = {"test/ua": "ua", "test/acc": "accuracy", "test/f1": "macro_f1"}


def summarize(
    jobs: pd.DataFrame,
    metrics: tuple[str, ...],
    sweep_dir: Path | None = None,
    bootstrap: BootstrapSettings = DEFAULT_BOOTSTRAP,
) -> pd.DataFrame:
    """Summarise a sweep per configuration: its metrics as mean ± std over repeats.

    One row per configuration, then one row per job that did not finish.

    Args:
        jobs: the table of `collect_jobs`.
        metrics: the metrics to summarise (those the jobs lack are left out).
        sweep_dir: the sweep folder; given, configurations whose jobs all kept per-clip
            predictions get a 95 % interval of each mean by a bootstrap over test speakers.
        bootstrap: resamples and seed of that bootstrap.

    Returns:
        The summary table (`<metric> mean`, `<metric> std`, `runs`, the speaker notes and,
        where computed, `<metric> low` / `<metric> high`).
    """
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
        rated = [Path(sweep_dir) / job / DIMENSION_PREDICTIONS for job in frame["job"]] if sweep_dir else []
        if rated and all(path.is_file() for path in rated):  # dimensional and multitask jobs
            ccc = mean_ccc_over_runs([pd.read_csv(p, dtype={"speaker": str}) for p in rated], bootstrap)
            row.setdefault("interval resamples", bootstrap.resamples)
            for name, score in ccc.items():
                if f"test/ccc_{name}" in metrics and score["interval"] is not None:
                    row[f"test/ccc_{name} low"], row[f"test/ccc_{name} high"] = score["interval"]
        voted = [Path(sweep_dir) / job / AGREEMENT_CLIPS for job in frame["job"]] if sweep_dir else []
        tables = [pd.read_csv(p, dtype={"speaker": str}) for p in voted if p.is_file()]
        if voted and len(tables) == len(voted) and all("speaker" in t for t in tables):
            row.setdefault("interval resamples", bootstrap.resamples)
            for name, score in mean_agreement_over_runs(tables, bootstrap).items():
                if f"test/{name}" in metrics and score["interval"] is not None:
                    row[f"test/{name} low"], row[f"test/{name} high"] = score["interval"]
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
    """The summary as a Markdown table with notes on protocol and intervals (report.md).

    Args:
        summary: the table of `summarize`.
        keys: the configuration columns (`configuration_columns`).
        metrics: the metrics to show, in order.
        title: the page's heading.

    Returns:
        The Markdown text.
    """
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


def plot_report(summary: pd.DataFrame, keys: list[str], metric: str, path: Path) -> Path | None:
    """The chosen metric per configuration as bars, std over repeats as error bars (report.png).

    Args:
        summary: the table of `summarize`.
        keys: the configuration columns.
        metric: the metric to plot.
        path: where to write the figure.

    Returns:
        `path`, or None when no configuration finished or the metric is missing.
    """
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
    if metric in DIMENSION_METRICS:  # CCC: 0 is no agreement, and it can fall below
        axis.set_ylim(min(0.0, float((done[f"{metric} mean"] - done[f"{metric} std"]).min())), 1)
        axis.axhline(0, color="grey", linewidth=1)
    elif metric == "test/js_divergence":  # bits in [0, 1]; no chance level
        axis.set_ylim(0, 1)
    else:
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
    allow_protocol_mismatch: bool = False,
    baseline: str | None = None,
    run_baseline: Callable[[DictConfig], Any] | None = None,
) -> dict[str, Path]:
    """Read a sweep and write its study report.

    The report is results.csv, summary.csv, report.md, report.png and, with
    `compare_configurations`, comparison.json.

    Args:
        sweep_dir: a Hydra multirun folder.
        out_dir: where to write (default: the sweep folder).
        metric: the metric to plot; summarised first.
        metrics: the other metrics to summarise.
        title: the report's heading (default: "Study: <sweep folder name>").
        compare_configurations: configurations A and B (`key=value` settings) for a paired test.
        bootstrap: resamples and seed of the intervals and the comparison.
        allow_protocol_mismatch: report jobs measured under different protocols together (with
            a note) instead of stopping.
        baseline: a classical baseline to add as one more configuration (`baseline=<name>`, a
            key of `study_baseline.BASELINES`), run on the jobs' folds into `<out>/baseline/`.
        run_baseline: what runs a missing baseline run (`ser_lightning.baseline.run_baseline`);
            None: only runs already in `<out>/baseline/` are used.

    Returns:
        The files written, by kind (`results`, `summary`, `markdown`, `plot`, `comparison`).

    Raises:
        ProtocolMismatch: If the jobs' protocol cards differ and `allow_protocol_mismatch` is False.
    """
    sweep_dir = Path(sweep_dir)
    jobs = collect_jobs(sweep_dir)  # first: a mistyped sweep folder must not be created as the output
    out_dir = Path(out_dir) if out_dir else sweep_dir
    if baseline:
        jobs = add_baseline(jobs, sweep_dir, out_dir, baseline, run_baseline)
    mismatch = check_one_protocol(jobs, sweep_dir, allow_protocol_mismatch)
    comparison = (
        compare(jobs, sweep_dir, *compare_configurations, bootstrap) if compare_configurations else None
    )
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
    protocols = sorted(p for p in jobs.get(PROTOCOL, pd.Series(dtype=str)).dropna().unique() if p)
    if mismatch:
        markdown += f"\n**Protocols differ**: {mismatch}; each job's is in results.csv (`{PROTOCOL}`).\n"
    elif protocols:
        markdown += f"\nProtocol: `{protocols[0]}` (the protocol card in each job's summary.json).\n"
    if baseline:
        markdown += "\n" + baseline_note(baseline, out_dir) + "\n"
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
    """Print the written study report as tables.

    The tables show the metric per configuration, job counts, protocol warnings and, where
    written, the comparison.

    Args:
        sweep_dir: the sweep folder (named in the table's title).
        written: the files of `build_report`.
        metric: the metric to show.
    """
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
