"""Emotions over time in a long recording.

Speech segments are found by a voice-activity detector, each scored as predict scores a file,
then smoothed along the recording.

1. Silero VAD (its pretrained ONNX model ships inside the `silero-vad` package, so nothing is
   downloaded) finds the speech in the decoded recording, on onnxruntime without torch, for
   both backends alike (`inference.speech_activity`); a segment longer than `max_segment_s` is
   cut at its longest pause, so a long monologue still gets several points in time.
2. Each segment is cut out of the decoded file and treated as a file of its own: conditioned
   (peak-normalised), cut into the model's windows (`clip_windows`) and scored; its
   probabilities are the mean of its windows, exactly what `predict` gives for a file holding
   only that segment.
3. The sequence of segment probabilities is smoothed by a centred moving average over
   `smooth_segments` neighbouring segments (1: none), weighted by how long each lasts, because
   emotion changes more slowly than the detector's cuts.

The scoring itself is left to the caller (predict scores synchronously, the HTTP service
through its batcher): `segment_windows` gives the windows to score, `build_timeline` the
timeline from their scores (`inference.window_scores`). A model with dimensions gives each
segment its arousal, valence and dominance too, the mean over the segment's windows (not
smoothed); a task=dimensional model's segments have those only, no emotion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.inference.speech_activity import find_speech
from ser_lightning.inference.windows import ClipWindows, clip_windows
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only: matplotlib is imported where a figure is drawn
    from matplotlib.figure import Figure

    from ser_lightning.inference.window_scores import WindowScores


@dataclass(frozen=True)
class TimelineSettings:
    """How speech is found and how the segment sequence is smoothed (conf: `timeline`)."""

    threshold: float = 0.5  # the detector's speech probability above which a frame is speech
    min_speech_ms: int = 250  # shorter bursts are not speech segments
    min_silence_ms: int = 300  # shorter pauses do not end a segment
    speech_pad_ms: int = 30  # added to both ends of each segment
    max_segment_s: float = 10.0  # longer speech is cut into several segments
    smooth_segments: int = 3  # width of the moving average over segments (odd; 1 = no smoothing)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise InvalidSetting(f"timeline.threshold={self.threshold} must be between 0 and 1")
        if self.smooth_segments < 1 or self.smooth_segments % 2 == 0:
            raise InvalidSetting(
                f"timeline.smooth_segments={self.smooth_segments} must be an odd number of segments (1 = off)"
            )
        if self.max_segment_s <= 0:
            raise InvalidSetting(
                f"timeline.max_segment_s={self.max_segment_s} must be a positive number of seconds"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> TimelineSettings:
        """Build the settings from the `timeline` config node.

        Args:
            cfg: a mapping of the settings' fields, or None for the defaults.

        Returns:
            The checked settings.
        """
        return cls(**dict(cfg or {}))


@dataclass
class TimelineSegment:
    """A stretch of speech: where it is, its (smoothed) probabilities and their top emotion."""

    start: float  # seconds from the start of the recording
    end: float
    probabilities: np.ndarray | None  # (K,) smoothed; None: a model without classes (task=dimensional)
    raw_probabilities: np.ndarray | None  # (K,) mean over the segment's windows, before smoothing
    windows: int
    # a model's arousal, valence and dominance, on the corpus's scale (the mean over the segment's
    # windows, unsmoothed); None: a model without dimensions
    dimensions: dict[str, float] | None = None

    def emotion(self, labels: list[str]) -> str:
        """Name the segment's top emotion.

        Args:
            labels: the emotion names, in the order of the probabilities.

        Returns:
            The label of the highest smoothed probability.
        """
        return labels[int(self.probabilities.argmax())]


@dataclass
class Timeline:
    """The speech segments of one recording, in order, with the labels their probabilities follow."""

    labels: list[str]
    duration: float
    segments: list[TimelineSegment] = field(default_factory=list)
    dimension_scale: dict | None = None  # the rating scale of the segments' dimensions, if any

    def records(self) -> list[dict]:
        """Turn the segments into plain JSON values.

        Returns:
            One object per segment: start, end, and (a model with classes) emotion, confidence,
            a probability per emotion, and the segment's `dimensions` when it has them.
        """
        return [
            {
                "start_s": round(s.start, 3),
                "end_s": round(s.end, 3),
                **(
                    {
                        "emotion": s.emotion(self.labels),
                        "confidence": float(s.probabilities.max()),
                        "probabilities": {
                            n: float(p) for n, p in zip(self.labels, s.probabilities, strict=True)
                        },
                    }
                    if s.probabilities is not None
                    else {}
                ),
                **({"dimensions": dict(s.dimensions)} if s.dimensions is not None else {}),
            }
            for s in self.segments
        ]


def speech_segments(wave: np.ndarray, sample_rate: int, settings: TimelineSettings) -> list[tuple[int, int]]:
    """Find the speech in a mono recording with Silero VAD (`inference.speech_activity`, no torch).

    Args:
        wave: the recording, mono at `sample_rate` (resampled to 16 kHz for the detector).
        sample_rate: the recording's rate.
        settings: the detector's threshold and the segments' minimum, padding and maximum lengths.

    Returns:
        (first sample, end sample) of each speech segment, in samples of `wave`.
    """
    return find_speech(
        wave,
        sample_rate,
        threshold=settings.threshold,
        min_speech_ms=settings.min_speech_ms,
        min_silence_ms=settings.min_silence_ms,
        speech_pad_ms=settings.speech_pad_ms,
        max_segment_s=settings.max_segment_s,
    )


def segment_windows(
    wave: np.ndarray, segments: list[tuple[int, int]], audio: AudioSettings, hop: float
) -> list[ClipWindows]:
    """Cut each segment out and into the model's windows, as a file of its own.

    Args:
        wave: the recording.
        segments: (first sample, end sample) of each segment.
        audio: the model's audio settings.
        hop: the most seconds between windows of a segment longer than the model's window.

    Returns:
        The windows of each segment, in order.
    """
    return [clip_windows(wave[start:end], audio, hop) for start, end in segments]


def smooth(probabilities: np.ndarray, weights: np.ndarray, width: int) -> np.ndarray:
    """Take the centred moving average of `(S, K)` probabilities over `width` segments.

    Each segment is weighted by `weights` (its duration); the ends average over the segments
    there are. Rows still sum to 1.

    Args:
        probabilities: one row per segment, `(S, K)`.
        weights: each segment's weight, `(S,)`.
        width: the window of the average, in segments (1 or less: no smoothing).

    Returns:
        The smoothed probabilities, a new `(S, K)` array.
    """
    if width <= 1 or len(probabilities) <= 1:
        return probabilities.copy()
    half = width // 2
    out = np.empty_like(probabilities)
    for i in range(len(probabilities)):
        lo, hi = max(0, i - half), min(len(probabilities), i + half + 1)
        w = weights[lo:hi, None]
        out[i] = (probabilities[lo:hi] * w).sum(axis=0) / w.sum()
    return out


def build_timeline(
    labels: list[str],
    sample_rate: int,
    duration: float,
    segments: list[tuple[int, int]],
    windows: list[ClipWindows],
    window_scores: WindowScores,
    settings: TimelineSettings,
    dimension_scale: dict | None = None,
) -> Timeline:
    """Build the timeline from the scores of all segments' windows, in order.

    Args:
        labels: the emotion names (empty for a model without classes).
        sample_rate: the rate the segments' sample positions are at.
        duration: the recording's length in seconds.
        segments: (first sample, end sample) of each segment.
        windows: each segment's windows (`segment_windows`).
        window_scores: the scores of all windows, segment after segment.
        settings: how many segments the smoothing spans.
        dimension_scale: the rating scale of the dimensions, for a model with them.

    Returns:
        The timeline: each segment's mean window probabilities, smoothed along the recording,
        and its mean window dimensions.
    """
    counts = [len(w) for w in windows]
    offsets = np.cumsum([0, *counts])
    per_segment = [window_scores[offsets[i] : offsets[i + 1]] for i in range(len(counts))]
    smoothed: list[np.ndarray | None] = [None] * len(counts)
    raw: list[np.ndarray | None] = [s.mean_probabilities() for s in per_segment]
    if labels and counts:
        lengths = np.array([(end - start) / sample_rate for start, end in segments], dtype=np.float64)
        stacked = np.stack(raw).astype(np.float64)
        smoothed = list(smooth(stacked, lengths, settings.smooth_segments).astype(np.float32))
    return Timeline(
        list(labels),
        duration,
        [
            TimelineSegment(
                start / sample_rate,
                end / sample_rate,
                smoothed[i],
                raw[i],
                counts[i],
                per_segment[i].mean_dimensions(),
            )
            for i, (start, end) in enumerate(segments)
        ],
        dimension_scale,
    )


def timeline_figure(
    timeline: Timeline | None, wave: np.ndarray | None, sample_rate: int, title: str = ""
) -> Figure:
    """Draw a recording's timeline as a matplotlib figure.

    The waveform, with each speech segment shaded in its emotion's colour; below it (when there
    is a timeline) each emotion's probability over time, a step per segment, and for a timeline
    with dimensions arousal and valence over time on the corpus's scale. A model without classes
    (task=dimensional) has no probability panel, and its segments are shaded grey.

    Args:
        timeline: the timeline, or None to draw the waveform only.
        wave: the recording's samples, or None.
        sample_rate: the samples' rate.
        title: the figure's title.

    Returns:
        The figure (the caller closes it).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10")
    if timeline is None:
        fig, top = plt.subplots(1, 1, figsize=(11, 2), constrained_layout=True)
        bottom = rated = None
    else:
        scale = timeline.dimension_scale if any(s.dimensions for s in timeline.segments) else None
        ratios = [1] + ([2] if timeline.labels else []) + ([1.5] if scale else [])
        fig, axes = plt.subplots(
            len(ratios),
            1,
            figsize=(11, 2 + 1.5 * sum(ratios[1:])),
            sharex=True,
            gridspec_kw={"height_ratios": ratios},
            constrained_layout=True,
            squeeze=False,
        )
        top, *panels = axes[:, 0]
        bottom = panels.pop(0) if timeline.labels else None
        rated = panels[0] if scale else None
    duration = (
        timeline.duration if timeline is not None else (len(wave) / sample_rate if wave is not None else 0)
    )
    if wave is not None and len(wave):
        step = max(1, len(wave) // 4000)
        envelope = np.abs(np.asarray(wave)[: len(wave) // step * step].reshape(-1, step)).max(axis=1)
        t = np.arange(len(envelope)) * step / sample_rate
        top.fill_between(t, -envelope, envelope, color="0.4", linewidth=0)
    top.set_yticks([])
    top.set_ylabel("waveform")
    top.set_xlim(0, max(duration, 1e-3))
    if title:
        top.set_title(title)
    if timeline is None:
        top.set_xlabel("time (s)")
        return fig
    labels = timeline.labels
    for segment in timeline.segments:
        if segment.probabilities is None:  # no classes: the speech in grey
            top.axvspan(segment.start, segment.end, color="0.6", alpha=0.3, linewidth=0)
            continue
        k = int(segment.probabilities.argmax())
        top.axvspan(segment.start, segment.end, color=colours(k % 10), alpha=0.3, linewidth=0)
        top.text(
            (segment.start + segment.end) / 2,
            0.95,
            labels[k],
            ha="center",
            va="top",
            fontsize=8,
            transform=top.get_xaxis_transform(),
        )
    if bottom is not None:
        for k, name in enumerate(labels):
            xs, ys = [], []
            for segment in timeline.segments:
                xs += [segment.start, segment.end, np.nan]
                ys += [float(segment.probabilities[k])] * 2 + [np.nan]
            bottom.plot(xs, ys, color=colours(k % 10), label=name, linewidth=2)
        bottom.set_ylim(0, 1)
        bottom.set_ylabel("probability")
        bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    if rated is not None:  # arousal and valence, a step per segment, on the corpus's rating scale
        for name, colour in (("arousal", "tab:red"), ("valence", "tab:blue")):
            xs = [x for s in timeline.segments for x in (s.start, s.end, np.nan)]
            ys = [y for s in timeline.segments for y in (*[s.dimensions[name]] * 2, np.nan)]
            rated.plot(xs, ys, color=colour, label=name, linewidth=2)
        rated.set_ylim(scale["low"], scale["high"])
        rated.set_ylabel(f"rating ({scale['low']:g}-{scale['high']:g})")
        rated.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    next(a for a in (rated, bottom, top) if a is not None).set_xlabel("time (s)")
    return fig


def plot_timeline(
    timeline: Timeline, wave: np.ndarray | None, sample_rate: int, path: str | Path, title: str = ""
) -> Path:
    """Save `timeline_figure` as a PNG, creating its folder.

    Returns:
        The PNG's path.
    """
    import matplotlib.pyplot as plt

    fig = timeline_figure(timeline, wave, sample_rate, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
