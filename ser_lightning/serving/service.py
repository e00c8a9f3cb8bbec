"""The model behind the HTTP API and the web page: uploads in, emotions out.

An upload is written to a private temporary folder (the decoders read files), decoded there
by exactly predict's code (`Predictor.read` and `Predictor.windows`: the same decoding,
conditioning and windowing), and deleted before it is scored; its windows are scored through
the dynamic batcher, by the predictor's own scoring function: one pass gives each window's class
probabilities and, for a model with dimensions, its arousal, valence and dominance
(`inference.window_scores`). A task=dimensional model answers its dimensions without an emotion.
A request never names a file the server reads: the server picks every path.

Whatever is wrong with an upload becomes a `RequestError` with the HTTP status and a message
that names the upload (by the client's file name) and the problem, never a path on the server.
The server chooses the name of the copy it decodes from the upload's first bytes, and the
decoders open audio and video containers only (`inference.containers`): a playlist gets 415.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from ser_lightning.decoding import AudioDecodeError
from ser_lightning.inference.containers import HEAD_BYTES, UnsupportedContainerError, sniffed_suffix
from ser_lightning.inference.media import InputError, MediaTooLongError
from ser_lightning.inference.results import FilePrediction
from ser_lightning.inference.timeline import (
    Timeline,
    TimelineSettings,
    build_timeline,
    segment_windows,
    speech_segments,
)
from ser_lightning.inference.windows import ClipWindows
from ser_lightning.serving.batching import BatchingSettings, DynamicBatcher

if TYPE_CHECKING:  # annotations only: serve backend=onnx imports no torch
    from ser_lightning.inference.onnx_backend import OnnxPredictor
    from ser_lightning.inference.predictor import Predictor

log = logging.getLogger(__name__)

# A clip whose loudest sample is below this (-60 dBFS) holds no speech to score.
SILENCE_PEAK = 10 ** (-60 / 20)
# The web page adds a timeline on its own to recordings longer than this many model windows.
LONG_RECORDING_WINDOWS = 3
# The samples (all channels, the file's own rate) one second of max_duration_s may decode to when
# max_decoded_samples is not set: 48 kHz stereo. Decoding costs in proportion to them, so a
# 132 KB FLAC of 10 minutes of 96 kHz stereo is refused from its header, not decoded for 17 s.
DECODED_SAMPLES_PER_SECOND = 2 * 48_000
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class RequestError(Exception):
    """A request the service refuses: `status` (413, 422) and a message naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class ServiceSettings:
    """Limits and options of the service: upload and decoding limits, windowing, batching, timeline."""

    max_upload_bytes: int = 50 * 1024 * 1024
    max_duration_s: float | None = 600.0
    max_decoded_samples: int | None = None  # None: max_duration_s x DECODED_SAMPLES_PER_SECOND
    hop: float | None = None  # seconds between windows of long clips; None: half the model's window
    long_clips: str = "windows"
    decode_workers: int = 2
    upload_dir: str | None = None  # where uploads are written while they are decoded; None: the system's
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    timeline: TimelineSettings = field(default_factory=TimelineSettings)

    @property
    def sample_budget(self) -> int | None:
        """The most samples (all channels) decoded from one upload; None: no limit."""
        if self.max_decoded_samples is not None:
            return self.max_decoded_samples
        if self.max_duration_s is None:
            return None
        return int(self.max_duration_s * DECODED_SAMPLES_PER_SECOND)


def display_name(filename: str | None) -> str:
    """Make the client's file name safe to show in messages and results.

    Args:
        filename: the name the client gave, or None.

    Returns:
        Its last part, other characters than letters, digits, `._ -` replaced by `_`, at most
        120 characters; "upload" when nothing is left.
    """
    name = _UNSAFE.sub("_", Path(str(filename or "")).name)[:120].strip()
    return name or "upload"


def without_paths(text: str, path: Path, name: str) -> str:
    """Replace the server's path of an upload (and its folder) in a decoder's message.

    Replies never name a file or folder of the server.

    Args:
        text: the decoder's message.
        path: where the server wrote the upload.
        name: the client's name for the upload.

    Returns:
        The message with the path replaced by `name` and its folder by "<upload folder>".
    """
    for where, said in ((str(path), name), (str(path.parent), "<upload folder>")):
        text = text.replace(where, said)
    return text


@dataclass
class Decoded:
    """An upload decoded and cut: its windows, and its speech segments in timeline mode."""

    name: str
    duration: float
    clip: ClipWindows
    segments: list[tuple[int, int]] | None = None
    segment_clips: list[ClipWindows] | None = None
    wave: np.ndarray | None = None  # kept for a plot only
    timeline: Timeline | None = None


class EmotionService:
    """Scores uploads with one predictor; `start()` and `stop()` run with the application."""

    def __init__(self, predictor: Predictor | OnnxPredictor, info: dict, settings: ServiceSettings):
        self.predictor = predictor
        self.info = info
        self.settings = settings
        self.labels = predictor.labels  # empty for a task=dimensional model
        self.whole_clips = predictor.audio.whole_clips
        # the rating scale of a model's dimensions (task=dimensional|multitask), or None
        self.dimension_scale = predictor.dimension_scale
        # A whole-clip model scores each upload (and each speech segment) whole. Concurrent
        # uploads are still batched: each clip's features come from its own samples and the
        # network takes a padded batch with their lengths (Predictor.whole_clip_scores),
        # which gives every clip what it gets alone and, measured on the CPU, scored 32 clips of
        # 1-6 s 2.2x as fast as one clip per model call (experiments/benchmarks/results/
        # whole_clip_serving.md); max_batch_windows then counts clips, and max_duration_s bounds
        # the padding of each.
        score = predictor.whole_clip_scores if self.whole_clips else predictor.waveform_scores
        self.batcher = DynamicBatcher(score, settings.batching)
        self._decoders = ThreadPoolExecutor(
            max_workers=max(1, settings.decode_workers), thread_name_prefix="ser-decode"
        )
        # seconds between windows (a whole clip has none: the value is not used)
        self.hop = (predictor.audio.duration or 1.0) / 2 if settings.hop is None else settings.hop
        # the length from which timeline="auto" adds a timeline: LONG_RECORDING_WINDOWS windows
        # (of a whole-clip model: of the nominal 3 s clip it was sized with)
        self.long_recording_s = (
            LONG_RECORDING_WINDOWS * predictor.audio.sizing_samples / predictor.audio.sample_rate
        )

    async def start(self) -> None:
        """Start the batcher (at application start-up)."""
        await self.batcher.start()

    async def stop(self) -> None:
        """Stop the batcher and the decoding threads (at application shutdown)."""
        await self.batcher.stop()
        self._decoders.shutdown(wait=True)

    # ------------------------------------------------------------------ uploads
    async def analyse_upload(
        self,
        source: BinaryIO | bytes,
        filename: str | None,
        timeline: bool | str = False,
        keep_wave: bool = False,
    ) -> tuple[dict, Decoded]:
        """Score an upload (a file object or bytes); the temporary copy is gone when this returns.

        Args:
            source: the upload's bytes, or a file object to read them from.
            filename: the client's name for it, or None.
            timeline: True to add the speech segments' emotions, "auto" to add them to long
                recordings only, False for none.
            keep_wave: whether to keep the decoded waveform in the returned Decoded (for a plot).

        Returns:
            The API's answer (`prediction_record`, with `timeline` when made) and the decoded upload.
        """
        name = display_name(filename)
        loop = asyncio.get_running_loop()
        self.batcher.expect()
        try:
            decoded = await loop.run_in_executor(
                self._decoders, self._store_and_decode, source, filename, name, timeline, keep_wave
            )
        finally:
            self.batcher.arrived()
        return await self._score(decoded), decoded

    async def analyse_path(
        self, path: str | Path, timeline: bool | str = False, keep_wave: bool = False
    ) -> tuple[dict, Decoded]:
        """Score a file the server itself wrote (the web page's upload, in its own cache).

        The name shown is the client's file name Gradio kept, without the path.

        Args:
            path: the file.
            timeline: True, "auto" or False, as for `analyse_upload`.
            keep_wave: whether to keep the decoded waveform in the returned Decoded.

        Returns:
            The API's answer and the decoded file.
        """
        loop = asyncio.get_running_loop()
        self.batcher.expect()
        try:
            decoded = await loop.run_in_executor(
                self._decoders, self._decode, Path(path), display_name(Path(path).name), timeline, keep_wave
            )
        finally:
            self.batcher.arrived()
        return await self._score(decoded), decoded

    # ------------------------------------------------------------------ steps
    def _store_and_decode(
        self, source: BinaryIO | bytes, filename: str | None, name: str, timeline: bool | str, keep_wave: bool
    ) -> Decoded:
        """Write the upload to a new private file, decode it, and delete the file.

        The copy is named by the suffix sniffed from the upload's first bytes; `mkstemp` creates it
        readable by this user only, under a name no client chooses. One file rather than a folder:
        creating and removing a folder per upload cost about a quarter of a core at 100 uploads/s
        (experiments/benchmarks/results/onnx_backend.md).

        Returns:
            The decoded upload.

        Raises:
            RequestError: 422 for an empty upload, and `_decode`'s refusals.
        """
        head = source[:HEAD_BYTES] if isinstance(source, bytes) else source.read(HEAD_BYTES)
        if not head:
            raise RequestError(
                422,
                f"the upload {name!r} is empty (0 bytes): send the recording as the multipart field "
                "`file` (curl -F file=@clip.wav ...) or as the request body",
            )
        handle, path = tempfile.mkstemp(
            prefix="ser-upload-", suffix=sniffed_suffix(head), dir=self.settings.upload_dir
        )
        try:
            with os.fdopen(handle, "wb") as out:
                if isinstance(source, bytes):
                    out.write(source)
                else:
                    out.write(head)
                    shutil.copyfileobj(source, out, length=1 << 20)
            return self._decode(Path(path), name, timeline, keep_wave)
        finally:
            Path(path).unlink(missing_ok=True)

    def _decode(self, path: Path, name: str, timeline: bool | str, keep_wave: bool) -> Decoded:
        """Decode and window one upload as predict does, with its errors in the client's words.

        Returns:
            Its windows and duration, with its speech segments when a timeline is due.

        Raises:
            RequestError: 415 for a refused container; 422 for a recording over the duration or
                sample budget, undecodable audio, no samples, or silence.
        """
        predictor = self.predictor
        try:
            wave = predictor.read(path, self.settings.max_duration_s, self.settings.sample_budget)
        except MediaTooLongError as err:
            if err.max_duration_s is None:  # too many samples for its length: a rate or channel bomb
                limit = f"more than the {self.settings.sample_budget:,} samples (all channels) this server decodes"
            else:
                limit = f"longer than the {err.max_duration_s:g} s this server decodes"
            raise RequestError(
                422,
                f"the upload {name!r} {err.length}, {limit} from one upload; send a shorter recording"
                + (" at a lower rate or with fewer channels" if err.max_duration_s is None else ""),
            ) from None
        except UnsupportedContainerError as err:
            raise RequestError(
                415, f"the upload {name!r} is refused: {without_paths(err.problem, path, name)}"
            ) from None
        except AudioDecodeError as err:
            raise RequestError(
                422,
                f"the upload {name!r} is not audio this server can decode ({without_paths(err.problem, path, name)}); "
                "send a complete audio or video file (wav, flac, ogg, mp3, mp4, mkv, ...) with a codec FFmpeg reads",
            ) from None
        rate = predictor.audio.sample_rate
        if len(wave) == 0:
            raise RequestError(422, f"the upload {name!r} holds no audio samples (a zero-length recording)")
        peak = float(np.max(np.abs(wave)))
        if not peak >= SILENCE_PEAK:
            raise RequestError(
                422,
                f"the upload {name!r} is silent (its loudest sample is {20 * np.log10(max(peak, 1e-12)):.0f} dBFS, "
                "below -60 dBFS): there is no speech to score",
            )
        clip = predictor.windows(wave, name, self.hop, self.settings.long_clips)
        if isinstance(clip, InputError):  # pragma: no cover (empty audio is refused above)
            raise RequestError(422, clip.message)
        decoded = Decoded(name, len(wave) / rate, clip, wave=wave if keep_wave else None)
        due = timeline is True or (timeline == "auto" and len(wave) > self.long_recording_s * rate)
        if due:  # the detector needs no torch: both backends make timelines
            decoded.segments = speech_segments(wave, rate, self.settings.timeline)
            decoded.segment_clips = segment_windows(wave, decoded.segments, predictor.audio, self.hop)
        return decoded

    async def _score(self, decoded: Decoded) -> dict:
        clips = [decoded.clip, *(decoded.segment_clips or [])]
        if self.whole_clips:  # clips of their own lengths: a list of 1-D clips, padded when scored
            windows = [np.asarray(c.window_view(i), dtype=np.float32) for c in clips for i in range(len(c))]
        else:
            windows = np.concatenate([c.take(np.arange(len(c))) for c in clips])
        # one pass: each window's probabilities and dimensions (WindowScores), the upload's and its segments'
        scores = await self.batcher.scores(windows)
        own = len(decoded.clip)
        prediction = self.predictor.prediction(decoded.name, decoded.clip, scores[:own])
        result = prediction_record(prediction)
        if decoded.segments is not None:
            timeline = build_timeline(
                self.labels,
                self.predictor.audio.sample_rate,
                decoded.duration,
                decoded.segments,
                decoded.segment_clips or [],
                scores[own:],
                self.settings.timeline,
                self.dimension_scale,
            )
            decoded.timeline = timeline
            result["timeline"] = timeline.records()
        return result


def prediction_record(prediction: FilePrediction) -> dict:
    """Turn a prediction into the API's answer for one file.

    Args:
        prediction: the predictor's result for the file.

    Returns:
        `file`, for a model with classes `emotion`, `confidence` and `probabilities` (one per
        emotion), `duration_s` and `windows`, for a checkpoint with conformal sets `emotion_set`
        and `set_coverage`, and for a model with dimensions `dimensions` and `dimension_scale`.
    """
    record: dict = {"file": prediction.path}
    if prediction.has_classes:
        record.update(
            emotion=prediction.predicted,
            confidence=prediction.confidence,
            probabilities={
                n: float(p) for n, p in zip(prediction.labels, prediction.probabilities, strict=True)
            },
        )
    record.update(duration_s=round(prediction.duration, 4), windows=prediction.windows)
    if prediction.prediction_set is not None:
        record.update(emotion_set=prediction.prediction_set, set_coverage=prediction.set_coverage)
    if prediction.dimensions is not None:
        record.update(dimensions=prediction.dimensions, dimension_scale=prediction.dimension_scale)
    return record
