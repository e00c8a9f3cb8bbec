"""How predictions are written: for a person (`human`), or for programs (`json`, `csv`).

A model with dimensions (task `multitask`) adds each file's arousal, valence and dominance on its
training corpus's scale beside the emotion, in every format; a task=dimensional model, which has
no classes, gives the dimensions only.
"""

from __future__ import annotations

import csv
import json
from typing import TextIO

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.inference.media import InputError
from ser_lightning.inference.results import FilePrediction
from ser_lightning.utils.errors import InvalidSetting

OUTPUT_FORMATS = ("human", "json", "csv")
PROBABILITY_PREFIX = "prob_"


def _percent(p: float) -> str:
    return f"{100.0 * p:.1f}%"


def dimension_text(dimensions: dict[str, float], scale: dict | None = None) -> str:
    """One line for a person: `arousal 3.41  valence 2.10  dominance 3.02 (scale 1-5)`.

    Args:
        dimensions: the values by name.
        scale: the rating scale `{"low", "high"}`, or None to leave it out.

    Returns:
        The line.
    """
    values = "  ".join(f"{name} {value:.2f}" for name, value in dimensions.items())
    return values + (f" (scale {scale['low']:g}-{scale['high']:g})" if scale else "")


def human_lines(item: FilePrediction | InputError, per_window: bool = False) -> list[str]:
    """Format one result for a person.

    Args:
        item: a file's prediction, or the error of an input that could not be scored.
        per_window: whether to add a line per window.

    Returns:
        The lines: the file, the predicted emotion with its confidence, the conformal set
        when the checkpoint has one, and all probabilities (a model with classes), the
        dimensions (a model with them), then the windows and the timeline's segments when
        present; for an error, the path and the message.
    """
    if isinstance(item, InputError):
        return [f"{item.path}", f"  error: {item.message}"]
    windows = item.windows
    lines = [f"{item.path}  ({item.duration:.2f} s, {windows} window{'s' if windows != 1 else ''})"]
    if item.has_classes:
        lines += [
            f"Predicted emotion: {item.predicted} ({_percent(item.confidence)})"
            + (
                f", best guess {item.best}, below {_percent(item.min_confidence)}"
                if item.predicted != item.best
                else ""
            ),
            "  "
            + "  ".join(
                f"{name} {_percent(p)}" for name, p in zip(item.labels, item.probabilities, strict=True)
            ),
        ]
        if item.prediction_set is not None:
            lines.insert(
                2, f"Set ({100 * item.set_coverage:.0f}% coverage): {', '.join(item.prediction_set)}"
            )
    if item.dimensions is not None:
        lines.append("  " + dimension_text(item.dimensions, item.dimension_scale))
    if per_window:
        for i, (start, end) in enumerate(item.window_spans):
            parts = []
            if item.has_classes:
                probs = item.window_probabilities[i]
                best = int(probs.argmax())
                parts.append(f"{item.labels[best]} ({_percent(float(probs[best]))})")
            if item.window_dimensions is not None:
                parts.append(
                    dimension_text(dict(zip(DIMENSIONS, map(float, item.window_dimensions[i]), strict=True)))
                )
            lines.append(f"    window {start:.2f}-{end:.2f} s: " + "  ".join(parts))
    if item.timeline is not None:
        lines.append(f"  timeline: {len(item.timeline.segments)} speech segments")
        for segment in item.timeline.records():
            rated = segment.get("dimensions") or {}
            emotion = (
                f"{segment['emotion']} ({_percent(segment['confidence'])})" if "emotion" in segment else ""
            )
            lines.append(
                f"    {segment['start_s']:7.2f}-{segment['end_s']:7.2f} s: {emotion}"
                + "".join(f"  {name} {rated[name]:.2f}" for name in ("arousal", "valence") if name in rated)
            )
    return lines


def json_record(item: FilePrediction | InputError, per_window: bool = False) -> dict:
    """Make the JSON object of one input; an unreadable input has `error` instead of scores.

    Args:
        item: a file's prediction, or the error of an input that could not be scored.
        per_window: whether to add `window_scores`.

    Returns:
        The record: file, (a model with classes) predicted, best guess, confidence and
        probabilities, duration and windows, with the conformal `emotion_set` and its
        `set_coverage`, (a model with dimensions) `dimensions` and `dimension_scale`,
        `window_scores` and `timeline` when present.
    """
    if isinstance(item, InputError):
        return {"file": item.path, "error": item.message}
    record: dict = {"file": item.path}
    if item.has_classes:
        record.update(
            predicted=item.predicted,
            best_guess=item.best,
            confidence=item.confidence,
            probabilities={n: float(p) for n, p in zip(item.labels, item.probabilities, strict=True)},
        )
    record.update(duration_s=round(item.duration, 4), windows=item.windows)
    if item.prediction_set is not None:
        record["emotion_set"] = list(item.prediction_set)
        record["set_coverage"] = item.set_coverage
    if item.dimensions is not None:  # on the training corpus's rating scale
        record["dimensions"] = dict(item.dimensions)
        record["dimension_scale"] = item.dimension_scale
    if per_window:
        record["window_scores"] = [_window_record(item, i) for i in range(item.windows)]
    if item.timeline is not None:
        record["timeline"] = item.timeline.records()
    return record


def _window_record(item: FilePrediction, i: int) -> dict:
    start, end = item.window_spans[i]
    record: dict = {"start_s": round(start, 4), "end_s": round(end, 4)}
    if item.has_classes:
        probs = item.window_probabilities[i]
        record["predicted"] = item.labels[int(probs.argmax())]
        record["probabilities"] = {n: float(p) for n, p in zip(item.labels, probs, strict=True)}
    if item.window_dimensions is not None:
        record["dimensions"] = {
            n: float(v) for n, v in zip(DIMENSIONS, item.window_dimensions[i], strict=True)
        }
    return record


class CsvWriter:
    """Rows `file, window, start_s, end_s, predicted, confidence, prob_<emotion>..., emotion_set, arousal, valence, dominance, error`.

    The class columns (`predicted` to `emotion_set`) are there for a model with classes, the
    dimension columns for a model with dimensions (on the training corpus's scale). The file's
    own row has an empty `window`; with per-window scores on, its windows follow as rows
    numbered from 0. `emotion_set` is the file's conformal set, emotions joined by `|` (empty for
    windows and for checkpoints without one).
    """

    def __init__(self, stream: TextIO, labels: list[str], per_window: bool = False, dimensions: bool = False):
        self.labels = labels
        self.per_window = per_window
        self.dimensions = dimensions
        self.writer = csv.writer(stream)
        self.writer.writerow(
            ["file", "window", "start_s", "end_s"]
            + (
                ["predicted", "confidence"] + [PROBABILITY_PREFIX + n for n in labels] + ["emotion_set"]
                if labels
                else []
            )
            + (list(DIMENSIONS) if dimensions else [])
            + ["error"]
        )

    def write(self, item: FilePrediction | InputError) -> None:
        """Write a file's row, then its windows' rows when per-window scores are on; an error gets one row."""
        if isinstance(item, InputError):
            width = (len(self.labels) + 3 if self.labels else 0) + (len(DIMENSIONS) if self.dimensions else 0)
            self.writer.writerow([item.path, "", "", ""] + [""] * width + [item.message])
            return
        members = "|".join(item.prediction_set) if item.prediction_set is not None else ""
        dimensions = [item.dimensions[n] for n in DIMENSIONS] if item.dimensions is not None else None
        self._row(
            item.path,
            "",
            0.0,
            item.duration,
            item.probabilities,
            dimensions,
            item.predicted if item.has_classes else None,
            members,
        )
        if self.per_window:
            for i, (start, end) in enumerate(item.window_spans):
                self._row(
                    item.path,
                    str(i),
                    start,
                    end,
                    item.window_probabilities[i] if item.has_classes else None,
                    item.window_dimensions[i] if item.window_dimensions is not None else None,
                )

    def _row(
        self,
        path: str,
        window: str,
        start: float,
        end: float,
        probs,
        dimensions,
        predicted: str | None = None,
        members: str = "",
    ) -> None:
        row = [path, window, f"{start:.3f}", f"{end:.3f}"]
        if self.labels:
            best = int(probs.argmax())
            row += [predicted or self.labels[best], f"{float(probs[best]):.6f}"]
            row += [f"{float(p):.6f}" for p in probs] + [members]
        if self.dimensions:
            row += [f"{float(v):.6f}" for v in dimensions]
        self.writer.writerow(row + [""])


class PredictionPrinter:
    """Writes each result as it comes, in one format, to one stream."""

    def __init__(
        self,
        stream: TextIO,
        output: str,
        labels: list[str],
        per_window: bool = False,
        dimensions: bool = False,
    ):
        if output not in OUTPUT_FORMATS:
            raise InvalidSetting(f"output={output!r} must be one of {OUTPUT_FORMATS}")
        self.stream, self.output, self.per_window = stream, output, per_window
        self.csv = CsvWriter(stream, labels, per_window, dimensions) if output == "csv" else None
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
