"""Causal speech segmentation of a live 16 kHz stream, for WS /v1/stream.

Audio arrives in chunks of any length; it is cut into 512-sample frames (32 ms) and each frame
goes once through Silero VAD's ONNX model (`inference.speech_activity.FrameVAD`, the detector
the offline timelines use too), whose recurrent state and 64-sample context are kept per
stream, so a frame's speech probability depends only on the audio before and in it. From those
probabilities `StreamSegmenter` decides, frame by frame and never looking ahead, the rules of
silero-vad's own `VADIterator`:

- speech starts at the first frame at or above `threshold` (less `speech_pad_ms`, never before
  the previous segment's end);
- it ends once `min_silence_ms` of frames have stayed below `threshold - 0.15`; the segment
  ends `speech_pad_ms` after its last speech frame. Segments shorter than `min_speech_ms` are
  dropped (a click, a breath);
- an open segment reaching `max_segment_s` is cut there (`forced`) and a new one starts at once;
- while a segment is open, a `partial` cut of it so far is made at most every `update_ms` of
  audio (and not before it is `min_speech_ms` long).

One ONNX session serves every stream (`run` is thread-safe); each stream owns its state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

# the detector, its model file and its frame are the offline timelines' (one voice-activity detector)
from ser_lightning.inference.speech_activity import NEGATIVE_MARGIN, VAD_FRAME, VAD_SAMPLE_RATE, FrameVAD
from ser_lightning.utils.errors import InvalidSetting

STREAM_SAMPLE_RATE = VAD_SAMPLE_RATE  # the rate the stream is sent at: Silero VAD's


@dataclass(frozen=True)
class StreamSettings:
    """The `stream` block of conf/serve.yaml: segmentation, partial updates and limits.

    Raises:
        InvalidSetting: when a value is out of range (named as `stream.<name>`).
    """

    update_ms: float = 1000.0  # the least audio between two partial events of an open segment
    max_streams: int = 8  # streams open at once; one more is refused (close code 1013)
    max_segment_s: float = 10.0  # longer speech is cut here (a `forced` segment) and goes on
    idle_timeout_s: float = 10.0  # a stream that sends nothing for this long is closed (1008)
    max_frame_bytes: int = 262_144  # the largest binary frame (4 s of float32); larger: 1009
    threshold: float = 0.5  # the detector's speech probability above which a frame is speech
    min_speech_ms: int = 250  # shorter speech is not a segment
    min_silence_ms: int = 200  # the pause that ends a segment (what a segment's event waits for)
    speech_pad_ms: int = 30  # added to both ends of a segment

    def __post_init__(self) -> None:
        checks = {
            "update_ms": self.update_ms > 0,
            "max_streams": self.max_streams >= 1,
            "max_segment_s": self.max_segment_s > 0,
            "idle_timeout_s": self.idle_timeout_s > 0,
            "max_frame_bytes": self.max_frame_bytes >= 4 * VAD_FRAME,
            "threshold": NEGATIVE_MARGIN < self.threshold < 1.0,
            "min_speech_ms": self.min_speech_ms >= 0,
            "min_silence_ms": self.min_silence_ms >= 0,
            "speech_pad_ms": self.speech_pad_ms >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            name = bad[0]
            rule = {
                "max_streams": "at least 1",
                "max_frame_bytes": f"at least {4 * VAD_FRAME} bytes (one detector frame of float32)",
                "threshold": f"between {NEGATIVE_MARGIN} and 1",
            }.get(
                name,
                "a positive number"
                if name in ("update_ms", "max_segment_s", "idle_timeout_s")
                else "0 or more",
            )
            raise InvalidSetting(f"stream.{name}={getattr(self, name)} must be {rule} (conf/serve.yaml)")
        if self.max_segment_s * 1000 <= self.min_speech_ms:
            raise InvalidSetting(
                f"stream.max_segment_s={self.max_segment_s} must be longer than stream.min_speech_ms="
                f"{self.min_speech_ms} ms"
            )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> StreamSettings:
        """Build the settings from the `stream` config node.

        Args:
            cfg: a mapping of the settings' fields, or None for the defaults.

        Returns:
            The checked settings.

        Raises:
            InvalidSetting: for a key the block does not have.
        """
        values = dict(cfg or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidSetting(
                f"stream.{unknown[0]} is not a setting of the stream block; it takes "
                + ", ".join(cls.__dataclass_fields__)
            )
        return cls(**values)


@dataclass(frozen=True)
class Cut:
    """A stretch of the stream to score: a finished `segment` or the `partial` of an open one."""

    kind: str  # "segment" or "partial"
    start: int  # first sample, counted from the stream's start
    end: int  # end sample (exclusive)
    index: int  # the segment's number in the stream, from 0 (a partial has its open segment's)
    audio: np.ndarray  # the samples [start, end), float32 at 16 kHz
    forced: bool = False  # a segment cut at max_segment_s while speech went on


class StreamSegmenter:
    """Cuts a live stream into speech segments as it arrives (see the module docstring)."""

    def __init__(self, settings: StreamSettings, vad=None):
        self.settings = settings
        self.vad = vad if vad is not None else FrameVAD()
        ms = STREAM_SAMPLE_RATE / 1000
        self.pad = int(settings.speech_pad_ms * ms)
        self.min_speech = int(settings.min_speech_ms * ms)
        self.min_silence = int(settings.min_silence_ms * ms)
        self.update = max(1, int(settings.update_ms * ms))
        self.max_segment = int(settings.max_segment_s * STREAM_SAMPLE_RATE)
        self.received = 0  # samples given to the detector (whole frames)
        self.segments = 0  # segments made so far
        self._pending = np.zeros(0, dtype=np.float32)  # samples short of a whole frame
        self._buffer = np.zeros(0, dtype=np.float32)  # kept samples, from _base on
        self._base = 0
        self._start: int | None = None  # the open segment's first sample
        self._silent_from: int | None = None  # where the open segment's current pause began
        self._floor = 0  # the previous segment's end: the next starts no earlier
        self._last_partial = 0

    @property
    def open(self) -> bool:
        """Whether a speech segment is open (speech started and not yet ended)."""
        return self._start is not None

    def _samples(self, start: int, end: int) -> np.ndarray:
        return self._buffer[start - self._base : end - self._base].copy()

    def feed(self, samples: np.ndarray) -> list[Cut]:
        """Take the next samples of the stream and run the detector on every whole frame.

        Args:
            samples: float32 samples at 16 kHz, in [-1, 1].

        Returns:
            The cuts those frames made, in order.
        """
        audio = np.concatenate([self._pending, np.asarray(samples, dtype=np.float32)])
        whole = len(audio) // VAD_FRAME * VAD_FRAME
        self._pending = audio[whole:]
        self._buffer = np.concatenate([self._buffer, audio[:whole]])
        cuts: list[Cut] = []
        for offset in range(0, whole, VAD_FRAME):
            cuts += self._step(float(self.vad(audio[offset : offset + VAD_FRAME])))
        self._trim()
        return cuts

    def finish(self) -> list[Cut]:
        """End the stream: the open segment, when long enough, ends at the last sample received.

        Returns:
            The last segment's cut, or nothing.
        """
        if self._pending.size:  # the last part frame: kept for the segment, not detected
            self._buffer = np.concatenate([self._buffer, self._pending])
            self.received += len(self._pending)
            self._pending = np.zeros(0, dtype=np.float32)
        if self._start is None:
            return []
        end = self.received if self._silent_from is None else min(self._silent_from + self.pad, self.received)
        return self._close(end)

    # ------------------------------------------------------------------ frame by frame
    def _step(self, probability: float) -> list[Cut]:
        frame_start = self.received
        self.received += VAD_FRAME
        now, cuts = self.received, []
        threshold = self.settings.threshold
        if probability >= threshold:
            self._silent_from = None
            if self._start is None:
                self._start = max(frame_start - self.pad, self._floor, self._base)
                self._last_partial = self._start
        elif probability < threshold - NEGATIVE_MARGIN and self._start is not None:
            if self._silent_from is None:
                self._silent_from = frame_start
            if now - self._silent_from >= self.min_silence:
                return self._close(min(self._silent_from + self.pad, now))
        if self._start is None:
            return cuts
        if now - self._start >= self.max_segment:
            cuts += self._close(now, forced=True)
            self._start, self._last_partial = now, now  # speech goes on: a new segment at once
            return cuts
        if now - self._start >= self.min_speech and now - self._last_partial >= self.update:
            self._last_partial = now
            cuts.append(Cut("partial", self._start, now, self.segments, self._samples(self._start, now)))
        return cuts

    def _close(self, end: int, forced: bool = False) -> list[Cut]:
        start, self._start, self._silent_from = self._start, None, None
        self._floor = end
        if start is None or end - start < self.min_speech:
            return []
        self.segments += 1
        return [Cut("segment", start, end, self.segments - 1, self._samples(start, end), forced)]

    def _trim(self) -> None:
        """Forget samples no cut can need: before the open segment, or older than the padding."""
        keep_from = self._start if self._start is not None else max(self._base, self.received - self.pad)
        drop = max(0, keep_from - self._base)
        if drop:
            self._buffer = self._buffer[drop:]
            self._base += drop
