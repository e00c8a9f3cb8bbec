"""The evaluation report on the console: its scores, intervals, calibration, gender gap and per-class table.

`print_report` is what `eval` and the end of `train` print of an `EvaluationReport`; the
speaker note in words (`speaker_note_text`) is printed in the run summary too.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ser_lightning.reporting.conformal import conformal_cells, conformal_note
from ser_lightning.reporting.evaluation import EvaluationReport

METRIC_NAMES = {
    "accuracy": "accuracy (WA)",
    "ua": "unweighted accuracy (UA)",
    "macro_f1": "macro-F1",
    "weighted_f1": "weighted F1",
}


def interval_text(report: EvaluationReport, key: str) -> str:
    """Format a score's interval.

    Args:
        report: the report holding the intervals.
        key: the score's name (`ua`, `accuracy`, `macro_f1`, ...).

    Returns:
        `[low, high]` to three decimals, or '' when the report has no interval for it.
    """
    interval = (report.intervals.get("intervals") or {}).get(key)
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""


def speaker_note_text(speakers: dict) -> str:
    """Put the split's note on speakers in words.

    Args:
        speakers: the note (`leakage.speaker_note`).

    Returns:
        A sentence saying whether test speakers were heard in training ('' when unknown).
    """
    if not speakers:
        return ""
    if speakers.get("speaker_independent"):
        return "speaker-independent: no test speaker is in the training split"
    n, total = speakers.get("test_clips_with_training_speaker"), speakers.get("test_clips")
    return (
        f"SPEAKER-DEPENDENT protocol ({speakers.get('split')}): {n} of {total} test clips have their "
        "speaker in the training split; scores are optimistic for new speakers"
    )


def print_report(report: EvaluationReport, title: str = "Evaluation", console: Console | None = None) -> None:
    """The metrics and the per-class table, for a person."""
    console = console or Console()
    console.print(f"[bold]{title}[/bold]")
    note = speaker_note_text(report.speakers)
    if note:
        console.print(("[bold red]" if not report.speakers.get("speaker_independent") else "") + note)
    overall = Table(show_header=False)
    overall.add_column("metric", style="bold")
    overall.add_column("value", justify="right")
    with_intervals = bool(report.intervals)
    if with_intervals:
        overall.add_column(f"{100 * report.intervals['confidence']:.0f} % interval", justify="right")
    for key, name in METRIC_NAMES.items():
        cells = [name, f"{report.metrics[key]:.3f}"] + (
            [interval_text(report, key)] if with_intervals else []
        )
        overall.add_row(*cells)
    overall.add_row("files", str(report.metrics["num_files"]), *([""] if with_intervals else []))
    calibration = report.calibration
    if calibration:
        ece = f"{calibration['ece']:.3f}"
        if "ece_uncalibrated" in calibration:
            ece += (
                f" (uncalibrated {calibration['ece_uncalibrated']:.3f}, T={calibration['temperature']:.2f})"
            )
        overall.add_row("calibration error (ECE)", ece, *([""] if with_intervals else []))
    if report.conformal:
        overall.add_row(*conformal_cells(report.conformal), *([""] if with_intervals else []))
    if report.gender_gap is not None:
        gap = report.gender_gap
        overall.add_row(
            "UA female / male",
            f"{gap['ua_female']:.3f} / {gap['ua_male']:.3f} (gap {gap['female_minus_male']:+.3f})",
            *([""] if with_intervals else []),
        )
    console.print(overall)
    if report.conformal:
        console.print(conformal_note(report.conformal))
    if with_intervals:
        console.print(
            f"intervals: {report.intervals['method']}, {report.intervals['speakers']} test speakers, "
            f"{report.intervals['resamples']} resamples, seed {report.intervals['seed']}"
            + (f" ({report.intervals['note']})" if report.intervals.get("note") else "")
        )
    per_class = Table()
    per_class.add_column("emotion", style="bold")
    for column in ("precision", "recall", "F1", "support"):
        per_class.add_column(column, justify="right")
    for name, row in report.per_class.iterrows():
        per_class.add_row(
            name, f"{row.precision:.3f}", f"{row.recall:.3f}", f"{row.f1:.3f}", str(int(row.support))
        )
    console.print(per_class)
