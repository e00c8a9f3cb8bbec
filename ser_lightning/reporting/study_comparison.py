"""The paired comparison of two configurations of a sweep.

`python -m ser_lightning.report SWEEP_DIR --compare A B`: jobs paired by fold and seed, scored on
the same test clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ser_lightning.reporting.intervals import DEFAULT_BOOTSTRAP, BootstrapSettings, paired_comparison
from ser_lightning.reporting.study_jobs import REPEAT_KEYS, configuration_columns, scored_run
from ser_lightning.utils.errors import InvalidSetting


def parse_selection(text: str) -> dict[str, str]:
    """`key=value key=value` (a configuration named by its overrides) as a dict.

    Args:
        text: settings separated by spaces, e.g. "model=acnt features=logmel".

    Returns:
        The settings, key to value (a leading `+` or `~` dropped from each key).

    Raises:
        InvalidSetting: an item without `=`, or no item at all.
    """
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
    """Configuration `a` against `b` on the same test clips.

    Jobs are paired by their repeat keys (fold, seed, split seed); each score gets the difference
    of the means, a paired-bootstrap interval and a paired permutation test over speakers.

    Args:
        jobs: the table of `collect_jobs`.
        sweep_dir: the sweep folder (the jobs' per-clip predictions are read from it).
        a: configuration A as `key=value` settings (`parse_selection`).
        b: configuration B, likewise.
        bootstrap: resamples and seed.

    Returns:
        The comparison as written to comparison.json.

    Raises:
        InvalidSetting: a selection that matches no or several configurations, runs that cannot
            be paired, or jobs without per-clip predictions.
    """
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
    """The comparison of `compare` as a Markdown section of report.md.

    Args:
        result: what `compare` returned.

    Returns:
        The Markdown text.
    """
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
