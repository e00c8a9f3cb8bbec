"""Files in, FilePredictions out: the decoding, windowing and batching both predictors share.

`FileScorer` is the part of `Predictor` (PyTorch) and `OnnxPredictor` (onnxruntime) that does
not depend on how windows are scored: it decodes files in threads, cuts them into the model's
windows, batches the windows of several files, and makes each file's FilePrediction (with its
conformal set, and a model's dimensions) from the scores that the subclass's `clip_scores` gives:
class probabilities and dimensions of every window from one pass (`inference.window_scores`). It
imports no torch, so the ONNX backend stays torch-free.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.calibration import check_min_confidence
from ser_lightning.conformal import prediction_sets, set_labels
from ser_lightning.decoding import AudioDecodeError
from ser_lightning.inference.execution import in_order
from ser_lightning.inference.media import DEFAULT_MAX_DURATION_S, InputError, MediaTooLongError, read_media
from ser_lightning.inference.results import FilePrediction
from ser_lightning.inference.timeline import (
    Timeline,
    TimelineSettings,
    build_timeline,
    segment_windows,
    speech_segments,
)
from ser_lightning.inference.window_scores import WindowScores
from ser_lightning.inference.windows import ClipWindows, check_window_options, clip_windows
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)


def check_class_settings(has_classes: bool, min_confidence: float, calibrated: bool) -> float:
    """Vet the settings of class probabilities against the model: a task=dimensional one has none.

    Args:
        has_classes: whether the model gives emotion classes.
        min_confidence: predict's `min_confidence`.
        calibrated: whether the checkpoint's calibration is used (predict's `calibration=checkpoint`).

    Returns:
        `min_confidence`, checked (`calibration.check_min_confidence`).

    Raises:
        InvalidSetting: for `min_confidence` above 0 or `calibration=none` on a model without classes.
    """
    min_confidence = check_min_confidence(min_confidence)
    if has_classes:
        return min_confidence
    if min_confidence > 0:
        raise InvalidSetting(
            f"min_confidence={min_confidence} answers `uncertain` below a top class probability, and this "
            "is a task=dimensional model: it gives arousal, valence and dominance, no emotion classes; "
            "leave min_confidence at 0"
        )
    if not calibrated:
        raise InvalidSetting(
            "calibration=none turns off the calibration of class probabilities, and this is a "
            "task=dimensional model: it has no emotion classes, nor a calibration; leave calibration "
            "at checkpoint (the default)"
        )
    return min_confidence


class FileScorer:
    """Decoding, windowing, batching and FilePredictions over a subclass's window scores.

    A subclass sets `audio`, `labels` (empty for a model without classes), `batch_size`,
    `min_confidence`, `conformal` (the checkpoint's conformal record, or None) and
    `dimension_scale` (the rating scale of a model with dimensions, or None), and defines
    `clip_scores`.
    """

    audio: AudioSettings
    labels: list[str]
    batch_size: int
    min_confidence: float
    conformal: dict | None
    dimension_scale: dict | None

    def clip_scores(self, clips: Sequence[ClipWindows]) -> WindowScores:
        """Score every window of some clips, clip after clip (defined by each backend).

        Args:
            clips: the clips' windows (one whole-clip window each for a whole-clip model).

        Returns:
            The scores of all windows, in order: `(W, K)` probabilities and/or `(W, 3)` dimensions.
        """
        raise NotImplementedError

    def empty_scores(self) -> WindowScores:
        """The scores of no windows, shaped as this model's.

        Returns:
            Zero rows of each output the model gives.
        """
        return WindowScores.empty(len(self.labels), self.dimension_scale is not None)

    def read(
        self,
        path: str | Path,
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
        max_samples: int | None = None,
    ) -> np.ndarray:
        """Decode a whole file as mono float32 at the model's rate (`media.read_media`).

        Raises AudioDecodeError for a file that cannot be decoded and MediaTooLongError for one
        over a limit.

        Args:
            path: the audio or video file.
            max_duration_s: the longest file decoded, or None for no limit.
            max_samples: the most samples decoded over all channels, or None for no limit.

        Returns:
            The mono waveform.
        """
        return read_media(path, self.audio.sample_rate, max_duration_s, max_samples)

    def windows(
        self, wave: np.ndarray, path: str | Path, hop: float | None = None, long_clips: str = "windows"
    ) -> ClipWindows | InputError:
        """Cut a decoded file into the model's windows.

        Args:
            wave: the decoded mono waveform.
            path: the file, for the error's message.
            hop: seconds between windows of long clips; half the model's window when None.
            long_clips: how clips longer than a window are handled (`inference.windows`).

        Returns:
            The clip's windows, or an InputError when it holds no samples.
        """
        if len(wave) == 0:
            return InputError(str(path), f"{str(path)!r} decodes to no audio samples (an empty recording)")
        hop = (self.audio.duration or 1.0) / 2 if hop is None else hop  # no hop within a whole clip
        return clip_windows(wave, self.audio, hop, long_clips)

    def decode(
        self,
        path: str | Path,
        hop: float | None = None,
        long_clips: str = "windows",
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    ) -> ClipWindows | InputError:
        """Decode and window one file; whatever goes wrong with one file stays its own.

        Args:
            path: the audio or video file.
            hop: seconds between windows of long clips; half the model's window when None.
            long_clips: how clips longer than a window are handled.
            max_duration_s: the longest file decoded, or None for no limit.

        Returns:
            The file's windows, or an InputError naming what went wrong (an unexpected failure
            is also logged).
        """
        try:
            return self.windows(self.read(path, max_duration_s), path, hop, long_clips)
        except (AudioDecodeError, MediaTooLongError) as err:
            return InputError(str(path), str(err))
        except Exception as err:  # noqa: BLE001 (a failure of one file must not stop the others)
            log.exception("decoding %s failed", path)
            return InputError(
                str(path),
                f"{str(path)!r} could not be decoded and cut into windows ({type(err).__name__}: {err}); "
                "the other inputs are still scored",
            )

    def prediction(self, path: str | Path, clip: ClipWindows, window_scores: WindowScores) -> FilePrediction:
        """Make a clip's FilePrediction from the scores of its windows.

        Args:
            path: the file, as shown in the result.
            clip: the clip's windows.
            window_scores: the scores of its windows, in order.

        Returns:
            The prediction: the mean over windows of the probabilities and of the dimensions,
            each window's, and the windows' spans.
        """
        mean = window_scores.mean_probabilities()
        conformal = self.conformal if mean is not None else None
        return FilePrediction(
            str(path),
            self.labels,
            mean,
            window_scores.probabilities,
            clip.spans(),
            clip.clip_seconds,
            min_confidence=self.min_confidence,
            prediction_set=self.prediction_set(mean) if conformal else None,
            set_coverage=conformal["coverage"] if conformal else None,
            dimensions=window_scores.mean_dimensions(),
            window_dimensions=window_scores.dimensions,
            dimension_scale=self.dimension_scale if window_scores.dimensions is not None else None,
        )

    def prediction_set(self, probabilities: np.ndarray) -> list[str] | None:
        """The conformal set of emotions of one clip's `(K,)` probabilities (ser_lightning.conformal).

        Returns:
            The emotions, most probable first; None when the model has no conformal record or
            the probabilities are not calibrated (`calibration=none`).
        """
        if not self.conformal:
            return None
        members = prediction_sets(probabilities, self.conformal["threshold"])
        return set_labels(members, self.labels, probabilities)

    def predict_files(
        self,
        paths: Iterable[str | Path],
        hop: float | None = None,
        long_clips: str = "windows",
        decode_workers: int = 4,
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    ) -> Iterator[FilePrediction | InputError]:
        """Score files in order; unreadable ones come back as InputError and the rest go on.

        Files are decoded in parallel threads, at most `decode_workers` at a time, and their
        windows batched together, so short clips fill batches. Decoded files wait for scoring
        only until their windows fill a batch, so the decoded audio held at once is at most
        `decode_workers + 1` files of at most `max_duration_s` seconds each (longer files are
        refused; None: no limit). `hop` (seconds between windows of long clips) defaults to
        half the model's window.

        Args:
            paths: the audio or video files.
            hop: seconds between windows of long clips; half the model's window when None.
            long_clips: how clips longer than a window are handled.
            decode_workers: the most files decoded at a time.
            max_duration_s: the longest file decoded, or None for no limit.

        Yields:
            Each file's FilePrediction, or its InputError, in the order of `paths`.

        Raises:
            InvalidSetting: when `hop`, `long_clips` or `max_duration_s` is invalid (checked when
                iteration starts).
        """
        hop = (self.audio.duration or 1.0) / 2 if hop is None else hop  # no hop within a whole clip
        check_window_options(hop, long_clips)
        if max_duration_s is not None and not max_duration_s > 0:
            raise InvalidSetting(
                f"max_duration_s={max_duration_s} must be a positive number of seconds (or null)"
            )
        paths = [Path(p) for p in paths]
        group = max(self.batch_size, 8)
        pending: list[tuple[Path, ClipWindows | InputError]] = []
        decoded = in_order(
            functools.partial(self.decode, hop=hop, long_clips=long_clips, max_duration_s=max_duration_s),
            paths,
            decode_workers,
        )
        for path, item in zip(paths, decoded, strict=True):
            pending.append((path, item))
            windows = sum(len(d) for _, d in pending if isinstance(d, ClipWindows))
            if windows >= self.batch_size or len(pending) >= group:
                yield from self._score(pending)
                pending = []
        if pending:
            yield from self._score(pending)

    def _score(
        self, pending: Sequence[tuple[Path, ClipWindows | InputError]]
    ) -> Iterator[FilePrediction | InputError]:
        clips = [d for _, d in pending if isinstance(d, ClipWindows)]
        scores = self.clip_scores(clips)  # windows of several clips share batches
        offsets = np.cumsum([0] + [len(c) for c in clips])
        c = 0
        for path, item in pending:
            if isinstance(item, InputError):
                yield item
                continue
            yield self.prediction(path, item, scores[offsets[c] : offsets[c + 1]])
            c += 1

    # ------------------------------------------------------------------ timelines
    def timeline(self, wave: np.ndarray, settings: TimelineSettings, hop: float | None = None) -> Timeline:
        """Build the emotion timeline of a decoded recording (see ser_lightning.inference.timeline).

        The speech segments come from the one voice-activity detector (`inference.speech_activity`,
        no torch), so both backends cut a recording the same way. A model trained on whole clips
        scores each speech segment whole, as one clip of its own length (conditioned as a file
        holding only that segment), instead of cutting it into windows.

        Args:
            wave: the decoded mono waveform, at the model's rate.
            settings: how speech segments are found and smoothed.
            hop: seconds between windows within a segment; half the model's window when None.

        Returns:
            The recording's speech segments, each with its emotion and probabilities.
        """
        hop = (self.audio.duration or 1.0) / 2 if hop is None else hop  # no hop within a whole clip
        segments = speech_segments(wave, self.audio.sample_rate, settings)
        windows = segment_windows(wave, segments, self.audio, hop)
        scores = self.clip_scores(windows)
        return build_timeline(
            self.labels,
            self.audio.sample_rate,
            len(wave) / self.audio.sample_rate,
            segments,
            windows,
            scores,
            settings,
            self.dimension_scale,
        )

    def predict_timelines(
        self,
        paths: Iterable[str | Path],
        settings: TimelineSettings,
        hop: float | None = None,
        long_clips: str = "windows",
        max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    ) -> Iterator[tuple[FilePrediction | InputError, np.ndarray | None]]:
        """Score files one by one, each with its emotion timeline.

        Args:
            paths: the audio or video files.
            settings: how speech segments are found and smoothed.
            hop: seconds between windows; half the model's window when None.
            long_clips: how clips longer than a window are handled.
            max_duration_s: the longest file decoded, or None for no limit.

        Yields:
            Each file's prediction with its timeline and its decoded samples (for a plot), or an
            InputError and None for a file that could not be decoded or holds no samples.
        """
        for path in paths:
            try:
                wave = self.read(path, max_duration_s)
            except (AudioDecodeError, MediaTooLongError) as err:
                yield InputError(str(path), str(err)), None
                continue
            clip = self.windows(wave, path, hop, long_clips)
            if isinstance(clip, InputError):
                yield clip, None
                continue
            result = self.prediction(path, clip, self.clip_scores([clip]))
            result.timeline = self.timeline(wave, settings, hop)
            yield result, wave
