"""Arousal, valence and dominance of new files, on the training corpus's rating scale.

A `task=dimensional` or `task=multitask` checkpoint (ser_lightning.dimensions) scores each file's
windows with `SERModel.dimensions` (the same windows the class scores use: `Predictor.windows`),
and a file's dimensions are the mean over its windows. `with_dimensions` adds them to a
multitask file's FilePrediction (beside the classes); `predict_dimensions` scores the files of a
dimensional model, which has no classes, into DimensionPredictions, written by
`dimension_lines`, `dimension_record` and `DimensionCsvWriter`.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np
import torch

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.inference.media import DEFAULT_MAX_DURATION_S, InputError
from ser_lightning.inference.predictor import Predictor
from ser_lightning.inference.results import FilePrediction
from ser_lightning.inference.windows import ClipWindows
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only: matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure


@dataclass
class DimensionPrediction:
    """A file's dimensions: the mean over its windows, and each window's.

    Attributes:
        path: the file, as given.
        dimensions: arousal, valence and dominance on the scale, mean over windows.
        window_dimensions: `(W, 3)` each window's values.
        window_spans: each window's `(start, end)` seconds.
        duration: seconds of the decoded file.
        scale: the rating scale `{"low", "high"}`.
    """

    path: str
    dimensions: dict[str, float]
    window_dimensions: np.ndarray
    window_spans: list[tuple[float, float]]
    duration: float
    scale: dict


def window_dimensions(predictor: Predictor, clip: ClipWindows) -> np.ndarray:
    """Score every window of a clip with the model's dimension head, in batches.

    Args:
        predictor: the predictor holding the model (`module`), its device and batch size.
        clip: the clip's windows.

    Returns:
        `(W, 3)` float64 values on the training corpus's scale.
    """
    model = predictor.module
    if predictor.audio.whole_clips:
        waves = [clip.window_view(i)[None] for i in range(len(clip))]
    else:
        stacked = clip.take(np.arange(len(clip)))
        waves = [stacked[i : i + predictor.batch_size] for i in range(0, len(stacked), predictor.batch_size)]
    out = []
    with torch.inference_mode():
        for wave in waves:
            batch = {"waveform": torch.from_numpy(np.asarray(wave, np.float32)).to(predictor.device)}
            out.append(model.dimensions(batch).cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros((0, len(DIMENSIONS)))


def clip_dimensions(predictor: Predictor, clips: list[ClipWindows]) -> list[dict[str, float]]:
    """Each clip's dimensions, the mean over its windows (what serve answers per upload and segment).

    Args:
        predictor: the predictor holding the model.
        clips: the clips' windows.

    Returns:
        One `{dimension: value}` on the training corpus's scale per clip, in order.
    """
    means = [window_dimensions(predictor, clip).mean(axis=0) for clip in clips]
    return [{name: float(mean[i]) for i, name in enumerate(DIMENSIONS)} for mean in means]


def timeline_dimensions(
    predictor: Predictor,
    item: FilePrediction,
    wave: np.ndarray,
    hop: float | None = None,
    long_clips: str = "windows",
) -> FilePrediction:
    """Add a multitask model's dimensions to a file scored with its timeline: the whole file's and each segment's.

    The segments are cut again from their sample positions (exact: each start and end is a sample
    index over the rate) into the windows their emotions were scored on (`segment_windows`).

    Args:
        predictor: the predictor that scored the file.
        item: the file's prediction, with its timeline.
        wave: the decoded recording.
        hop: seconds between windows, as the class scores used.
        long_clips: how long clips were cut, as the class scores used.

    Returns:
        The prediction with `dimensions` set, and its timeline's segments and scale.
    """
    from ser_lightning.inference.timeline import segment_windows

    rate = predictor.audio.sample_rate
    hop = (predictor.audio.duration or 1.0) / 2 if hop is None else hop
    timeline = item.timeline
    spans = [(round(s.start * rate), round(s.end * rate)) for s in timeline.segments]
    clips = [
        predictor.windows(wave, item.path, hop, long_clips),
        *segment_windows(wave, spans, predictor.audio, hop),
    ]
    values = clip_dimensions(predictor, clips)
    for segment, own in zip(timeline.segments, values[1:], strict=True):
        segment.dimensions = own
    timeline.dimension_scale = predictor.module.dimension_scale.to_dict()
    return dataclasses.replace(item, dimensions=values[0])


def _scored(predictor: Predictor, path: str, clip: ClipWindows) -> DimensionPrediction:
    values = window_dimensions(predictor, clip)
    mean = values.mean(axis=0)
    return DimensionPrediction(
        str(path),
        {name: float(mean[i]) for i, name in enumerate(DIMENSIONS)},
        values,
        clip.spans(),
        clip.clip_seconds,
        predictor.module.dimension_scale.to_dict(),
    )


def with_dimensions(
    predictor: Predictor,
    item: FilePrediction | InputError,
    hop: float | None = None,
    long_clips: str = "windows",
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> FilePrediction | InputError:
    """Add a multitask model's dimensions to a file's class prediction (errors pass unchanged).

    Args:
        predictor: the predictor that scored the file.
        item: the file's prediction.
        hop: seconds between windows, as the class scores used.
        long_clips: how long clips were cut, as the class scores used.
        max_duration_s: the longest file decoded.

    Returns:
        The prediction with `dimensions` set.
    """
    if isinstance(item, InputError):
        return item
    clip = predictor.decode(item.path, hop, long_clips, max_duration_s)
    if isinstance(clip, InputError):
        return clip
    return dataclasses.replace(item, dimensions=_scored(predictor, item.path, clip).dimensions)


def predict_dimensions(
    predictor: Predictor,
    files: Iterable[str | Path],
    hop: float | None = None,
    long_clips: str = "windows",
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> Iterator[DimensionPrediction | InputError]:
    """Score the dimensions of each file of a `task=dimensional` model, one file at a time.

    Args:
        predictor: the predictor holding the model.
        files: the audio or video files.
        hop: seconds between windows of long clips (half a window when None).
        long_clips: how clips longer than a window are handled.
        max_duration_s: the longest file decoded.

    Yields:
        A DimensionPrediction per file, or the InputError of a file that could not be decoded.
    """
    for path in files:
        clip = predictor.decode(path, hop, long_clips, max_duration_s)
        yield clip if isinstance(clip, InputError) else _scored(predictor, str(path), clip)


def dimension_text(dimensions: dict[str, float], scale: dict) -> str:
    """One line for a person: `arousal 3.41  valence 2.10  dominance 3.02 (scale 1-5)`.

    Args:
        dimensions: the values by name.
        scale: the rating scale.

    Returns:
        The line.
    """
    values = "  ".join(f"{name} {value:.2f}" for name, value in dimensions.items())
    return f"{values} (scale {scale['low']:g}-{scale['high']:g})"


def valence_arousal_figure(
    dimensions: dict[str, float], scale: dict, segments: list[dict] | None = None
) -> Figure:
    """Draw a recording's place on the valence-arousal plane, axes on the corpus's rating scale.

    Args:
        dimensions: the recording's values by name (`valence` and `arousal` are drawn).
        scale: the rating scale `{"low", "high"}`.
        segments: timeline records with `dimensions`, drawn as small numbered points (optional).

    Returns:
        The matplotlib figure (the caller closes it).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    low, high = scale["low"], scale["high"]
    middle = (low + high) / 2
    fig, ax = plt.subplots(figsize=(4.5, 4.5), constrained_layout=True)
    ax.axhline(middle, color="0.7", linewidth=1)
    ax.axvline(middle, color="0.7", linewidth=1)
    for i, segment in enumerate(s for s in segments or [] if s.get("dimensions")):
        values = segment["dimensions"]
        ax.plot(values["valence"], values["arousal"], "o", color="tab:gray", markersize=5)
        ax.annotate(
            str(i + 1),
            (values["valence"], values["arousal"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.plot(
        dimensions["valence"], dimensions["arousal"], "o", color="tab:red", markersize=12, label="recording"
    )
    for x, y, text, ha, va in (
        (high, high, "excited", "right", "top"),
        (low, high, "tense", "left", "top"),
        (low, low, "sad, tired", "left", "bottom"),
        (high, low, "calm, content", "right", "bottom"),
    ):
        ax.text(x, y, text, ha=ha, va=va, fontsize=8, color="0.45")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel(f"valence ({low:g}-{high:g})")
    ax.set_ylabel(f"arousal ({low:g}-{high:g})")
    ax.set_aspect("equal")
    ax.set_title("valence-arousal" + (" (grey: speech segments)" if segments else ""), fontsize=10)
    return fig


def dimension_lines(item: DimensionPrediction | InputError) -> list[str]:
    """Format a dimensional result for a person.

    Args:
        item: a file's dimensions, or the error of an input that could not be scored.

    Returns:
        The file with its duration and windows, then its dimensions; for an error, the message.
    """
    if isinstance(item, InputError):
        return [f"{item.path}", f"  error: {item.message}"]
    windows = len(item.window_dimensions)
    return [
        f"{item.path}  ({item.duration:.2f} s, {windows} window{'s' if windows != 1 else ''})",
        f"  {dimension_text(item.dimensions, item.scale)}",
    ]


def dimension_record(item: DimensionPrediction | InputError) -> dict:
    """The JSON object of a dimensional result; an unreadable input has `error` instead.

    Args:
        item: a file's dimensions, or an input's error.

    Returns:
        file, dimensions, scale, duration_s and windows.
    """
    if isinstance(item, InputError):
        return {"file": item.path, "error": item.message}
    return {
        "file": item.path,
        "dimensions": item.dimensions,
        "scale": item.scale,
        "duration_s": round(item.duration, 4),
        "windows": len(item.window_dimensions),
    }


class DimensionCsvWriter:
    """Rows `file, arousal, valence, dominance, error`: one per file."""

    def __init__(self, stream: TextIO):
        self.writer = csv.writer(stream)
        self.writer.writerow(["file", *DIMENSIONS, "error"])

    def write(self, item: DimensionPrediction | InputError) -> None:
        """Write a file's row (an error gets its message and empty values)."""
        if isinstance(item, InputError):
            self.writer.writerow([item.path, *([""] * len(DIMENSIONS)), item.message])
            return
        self.writer.writerow([item.path, *(f"{item.dimensions[n]:.6f}" for n in DIMENSIONS), ""])


def served_dimension_scale(predictor: Predictor) -> dict | None:
    """The rating scale of a served multitask model's dimensions, or None when it has none.

    Args:
        predictor: the predictor serve scores with.

    Returns:
        `{"low", "high"}` of the training corpus for a multitask model; None otherwise (a
        categorical network or a baseline).

    Raises:
        InvalidSetting: If the model is task=dimensional: it gives no emotion, which every answer has.
    """
    task = getattr(predictor.module, "task", None)  # a baseline's scorer has none: classes only
    if task is None:
        return None
    if not task.has_categories:
        raise InvalidSetting(
            "serve answers every recording with an emotion, and this checkpoint is a task=dimensional model "
            "without emotion classes: score its arousal, valence and dominance with "
            "`python -m ser_lightning.predict ckpt_path=... inputs=[...]`, or train with task=multitask to "
            "serve emotions and dimensions together (docs/dimensions.md)"
        )
    scale = predictor.module.dimension_scale if task.has_dimensions else None
    return scale.to_dict() if scale is not None else None
