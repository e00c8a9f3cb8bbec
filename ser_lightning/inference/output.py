"""How predictions are written: for a person (`human`), or for programs (`json`, `csv`)."""

from __future__ import annotations

import csv
import json
from typing import TextIO

from ser_lightning.inference.media import InputError
from ser_lightning.inference.results import FilePrediction
from ser_lightning.utils.errors import InvalidSetting

OUTPUT_FORMATS = ("human", "json", "csv")
PROBABILITY_PREFIX = "prob_"


def _percent(p: float) -> str:
    return f"{100.0 * p:.1f}%"


def human_lines(item: FilePrediction | InputError, per_window: bool = False) -> list[str]:
    """Format one result for a person.

    Args:
        item: a file's prediction, or the error of an input that could not be scored.
        per_window: whether to add a line per window.

    Returns:
        The lines: the file, the predicted emotion with its confidence, the conformal set
        when the checkpoint has one, and all probabilities, then the windows and the
        timeline's segments when present; for an error, the path and the message.
    """
    if isinstance(item, InputError):
        return [f"{item.path}", f"  error: {item.message}"]
    windows = len(item.window_probabilities)
    lines = [
        f"{item.path}  ({item.duration:.2f} s, {windows} window{'s' if windows != 1 else ''})",
        f"Predicted emotion: {item.predicted} ({_percent(item.confidence)})"
        + (
            f", best guess {item.best}, below {_percent(item.min_confidence)}"
            if item.predicted != item.best
            else ""
        ),
        "  "
        + "  ".join(f"{name} {_percent(p)}" for name, p in zip(item.labels, item.probabilities, strict=True)),
    ]
    if item.prediction_set is not None:
        lines.insert(2, f"Set ({100 * item.set_coverage:.0f}% coverage): {', '.join(item.prediction_set)}")
    if item.dimensions is not None:
        lines.append("  " + "  ".join(f"{name} {value:.2f}" for name, value in item.dimensions.items()))
    if per_window:
        for (start, end), probs in zip(item.window_spans, item.window_probabilities, strict=True):
            best = int(probs.argmax())
            lines.append(
                f"    window {start:.2f}-{end:.2f} s: {item.labels[best]} ({_percent(float(probs[best]))})"
            )
    if item.timeline is not None:
        lines.append(f"  timeline: {len(item.timeline.segments)} speech segments")
        for segment in item.timeline.records():
            rated = segment.get("dimensions") or {}
            lines.append(
                f"    {segment['start_s']:7.2f}-{segment['end_s']:7.2f} s: {segment['emotion']} "
                f"({_percent(segment['confidence'])})"
                + "".join(f"  {name} {rated[name]:.2f}" for name in ("arousal", "valence") if name in rated)
            )
    return lines


def json_record(item: FilePrediction | InputError, per_window: bool = False) -> dict:
    """Make the JSON object of one input; an unreadable input has `error` instead of scores.

    Args:
        item: a file's prediction, or the error of an input that could not be scored.
        per_window: whether to add `window_scores`.

    Returns:
        The record: file, predicted, best guess, confidence, probabilities, duration and
        windows, with the conformal `emotion_set` and its `set_coverage`, `window_scores` and
        `timeline` when present.
    """
    if isinstance(item, InputError):
        return {"file": item.path, "error": item.message}
    record = {
        "file": item.path,
        "predicted": item.predicted,
        "best_guess": item.best,
        "confidence": item.confidence,
        "probabilities": {n: float(p) for n, p in zip(item.labels, item.probabilities, strict=True)},
        "duration_s": round(item.duration, 4),
        "windows": len(item.window_probabilities),
    }
    if item.prediction_set is not None:
        record["emotion_set"] = list(item.prediction_set)
        record["set_coverage"] = item.set_coverage
    if item.dimensions is not None:  # a task=multitask checkpoint: on its corpus's rating scale
        record["dimensions"] = dict(item.dimensions)
    if per_window:
        record["window_scores"] = [
            {
                "start_s": round(start, 4),
                "end_s": round(end, 4),
                "predicted": item.labels[int(probs.argmax())],
                "probabilities": {n: float(p) for n, p in zip(item.labels, probs, strict=True)},
            }
            for (start, end), probs in zip(item.window_spans, item.window_probabilities, strict=True)
        ]
    if item.timeline is not None:
        record["timeline"] = item.timeline.records()
    return record


class CsvWriter:
    """Rows `file, window, start_s, end_s, predicted, confidence, prob_<emotion>..., emotion_set, error`.

    The file's own row has an empty `window`; with per-window scores on, its windows follow
    as rows numbered from 0. `emotion_set` is the file's conformal set, emotions joined by `|` (empty
    for windows and for checkpoints without one).
    """

    def __init__(self, stream: TextIO, labels: list[str], per_window: bool = False):
        self.labels = labels
        self.per_window = per_window
        self.writer = csv.writer(stream)
        self.writer.writerow(
            ["file", "window", "start_s", "end_s", "predicted", "confidence"]
            + [PROBABILITY_PREFIX + n for n in labels]
            + ["emotion_set", "error"]
        )

    def write(self, item: FilePrediction | InputError) -> None:
        """Write a file's row, then its windows' rows when per-window scores are on; an error gets one row."""
        if isinstance(item, InputError):
            self.writer.writerow(
                [item.path, "", "", "", "", ""] + [""] * len(self.labels) + ["", item.message]
            )
            return
        members = "|".join(item.prediction_set) if item.prediction_set is not None else ""
        self._row(item.path, "", 0.0, item.duration, item.probabilities, item.predicted, members)
        if self.per_window:
            for i, ((start, end), probs) in enumerate(
                zip(item.window_spans, item.window_probabilities, strict=True)
            ):
                self._row(item.path, str(i), start, end, probs)

    def _row(
        self,
        path: str,
        window: str,
        start: float,
        end: float,
        probs,
        predicted: str | None = None,
        members: str = "",
    ) -> None:
        best = int(probs.argmax())
        self.writer.writerow(
            [
                path,
                window,
                f"{start:.3f}",
                f"{end:.3f}",
                predicted or self.labels[best],
                f"{float(probs[best]):.6f}",
            ]
            + [f"{float(p):.6f}" for p in probs]
            + [members, ""]
        )


class PredictionPrinter:
    """Writes each result as it comes, in one format, to one stream."""

    def __init__(self, stream: TextIO, output: str, labels: list[str], per_window: bool = False):
        if output not in OUTPUT_FORMATS:
            raise InvalidSetting(f"output={output!r} must be one of {OUTPUT_FORMATS}")
        self.stream, self.output, self.per_window = stream, output, per_window
        self.csv = CsvWriter(stream, labels, per_window) if output == "csv" else None
        self.count = 0

    def write(self, item: FilePrediction | InputError) -> None:
        """Write one result in the printer's format and flush the stream."""
        if self.output == "human":
            if self.count:
                self.stream.write("\n")
            self.stream.write("\n".join(human_lines(item, self.per_window)) + "\n")
        elif self.output == "json":
            self.stream.write(json.dumps(json_record(item, self.per_window)) + "\n")
        else:
            self.csv.write(item)
        self.stream.flush()
        self.count += 1
