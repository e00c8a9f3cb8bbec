"""Where the speech is in a recording, without torch: Silero VAD's ONNX model and its segment rules.

The project has one voice-activity detector. Its model is the ONNX file the `silero-vad` package
ships (`silero_vad/data/silero_vad.onnx`), run by onnxruntime on 512 samples at 16 kHz (32 ms)
at a time, with its recurrent state and the previous frame's last 64 samples carried from frame
to frame (`FrameVAD`). The live stream (`serving.streaming`) feeds it frame by frame as audio
arrives and decides causally; a whole recording (the timelines of predict and serve, on the torch
and the onnx backend alike) is scored in one pass (`speech_probabilities`) and cut into segments
by the offline rules of silero-vad's `get_speech_timestamps`, written here again over the
frames' probabilities (`speech_spans`):

- hysteresis: speech starts at the first frame at or above `threshold`; once in speech, a frame
  below `threshold - 0.15` (at least 0.01) opens a pause, which a frame at or above `threshold`
  closes; frames in between leave things as they are;
- a pause that has lasted `min_silence_ms` ends the segment where the pause began; a segment
  not longer than `min_speech_ms` is dropped;
- a segment growing past `max_segment_s` (less one frame and both paddings) is cut at the start
  of its longest closed pause of more than 98 ms, and the speech after that pause goes on as the
  next segment; with no such pause it is cut at the current frame, and the next segment starts
  at the next speech frame;
- speech still open at the end of the recording ends there (when longer than `min_speech_ms`);
- padding: each segment grows by `speech_pad_ms` at both ends, within the recording; where two
  segments are closer than twice the padding, each grows by half the gap instead.

`tests/test_speech_activity.py` checks these rules against silero-vad's own on the same
probabilities (equal), and the segments against `get_speech_timestamps` with its torch model
(within one frame). The silero-vad package imports torch when it is imported, so the model file
is found from the package's location without importing it.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ser_lightning.utils.errors import UserError

if TYPE_CHECKING:  # annotations only: onnxruntime is imported where the model is opened
    import onnxruntime

VAD_SAMPLE_RATE = 16000  # the rate the detector runs at (the one its 16 kHz model was made for)
VAD_FRAME = 512  # samples per detector frame at 16 kHz (32 ms)
VAD_CONTEXT = 64  # samples of the previous frame the detector sees with each frame
# once in speech, a frame stops counting as speech below threshold - NEGATIVE_MARGIN (at least
# MIN_NEGATIVE_THRESHOLD): silero-vad's hysteresis
NEGATIVE_MARGIN = 0.15
MIN_NEGATIVE_THRESHOLD = 0.01
# a pause must be longer than this to be a place where an over-long segment may be cut
MIN_PAUSE_AT_MAX_MS = 98
MODEL_FILE = "silero_vad.onnx"


def silero_model_path() -> Path:
    """Find Silero VAD's ONNX model in the installed `silero-vad` package, without importing it.

    Returns:
        The path of `silero_vad/data/silero_vad.onnx`.

    Raises:
        UserError: when silero-vad is not installed or its model file is missing.
    """
    spec = importlib.util.find_spec("silero_vad")  # a top-level package: found, not imported
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / "data" / MODEL_FILE
        if path.is_file():
            return path
    raise UserError(
        f"the voice-activity detector's model (silero_vad/data/{MODEL_FILE}) is not installed: "
        "install the project's locked dependencies (pip install silero-vad), which ship it"
    )


@functools.cache
def vad_session() -> onnxruntime.InferenceSession:
    """Open the detector's ONNX model once per process; every recording and stream shares it.

    `run` is thread-safe, and each caller keeps its own state (`FrameVAD`). One thread per
    call: a frame is a few small matrix products, which more threads only slow down.

    Returns:
        The onnxruntime InferenceSession on the CPU.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(
        str(silero_model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )


class FrameVAD:
    """Silero VAD over one recording or stream: a speech probability per 512-sample frame, in order."""

    def __init__(self) -> None:
        self.session = vad_session()
        self.state = np.zeros((2, 1, 128), dtype=np.float32)
        self.context = np.zeros((1, VAD_CONTEXT), dtype=np.float32)
        self._rate = np.array(VAD_SAMPLE_RATE, dtype=np.int64)

    def __call__(self, frame: np.ndarray) -> float:
        """Score the next frame.

        Args:
            frame: 512 float32 samples at 16 kHz, right after the previous frame.

        Returns:
            The probability that the frame is speech.
        """
        x = np.concatenate([self.context, frame.reshape(1, VAD_FRAME).astype(np.float32)], axis=1)
        out, self.state = self.session.run(None, {"input": x, "state": self.state, "sr": self._rate})
        self.context = x[:, -VAD_CONTEXT:]
        return float(out[0, 0])


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Score a whole 16 kHz recording frame by frame, from a fresh state.

    Args:
        audio: mono float32 samples at 16 kHz.

    Returns:
        One speech probability per 512-sample frame, `(ceil(len(audio) / 512),)`; the last frame
        is padded with zeros.
    """
    frames = -(-len(audio) // VAD_FRAME)
    padded = np.zeros(frames * VAD_FRAME, dtype=np.float32)
    padded[: len(audio)] = audio
    vad = FrameVAD()
    return np.array([vad(frame) for frame in padded.reshape(frames, VAD_FRAME)], dtype=np.float32)


def speech_spans(
    probabilities: np.ndarray,
    num_samples: int,
    threshold: float = 0.5,
    min_speech_ms: float = 250,
    min_silence_ms: float = 100,
    speech_pad_ms: float = 30,
    max_segment_s: float = float("inf"),
) -> list[tuple[int, int]]:
    """Turn the frames' speech probabilities into speech segments (the rules in the module docstring).

    Args:
        probabilities: one per 512-sample frame at 16 kHz, in order.
        num_samples: the recording's length in samples at 16 kHz (the last frame may be partial).
        threshold: the probability at or above which a frame is speech.
        min_speech_ms: segments this long or shorter are dropped.
        min_silence_ms: the pause that ends a segment.
        speech_pad_ms: added to both ends of each segment.
        max_segment_s: longer speech is cut into several segments.

    Returns:
        (first sample, end sample) of each segment at 16 kHz, in order.
    """
    ms = VAD_SAMPLE_RATE / 1000
    min_speech, min_silence, pad = min_speech_ms * ms, min_silence_ms * ms, speech_pad_ms * ms
    max_speech = VAD_SAMPLE_RATE * max_segment_s - VAD_FRAME - 2 * pad
    min_pause_at_max = MIN_PAUSE_AT_MAX_MS * ms
    negative = max(threshold - NEGATIVE_MARGIN, MIN_NEGATIVE_THRESHOLD)

    found: list[list[int]] = []  # [start, end] before padding
    start: int | None = None  # the open segment's first sample (None: no speech open)
    pause: int | None = None  # where the open segment's current pause began
    pauses: list[tuple[int, int]] = []  # (start, length) of its closed pauses long enough to cut at
    for i, probability in enumerate(np.asarray(probabilities, dtype=np.float64)):
        at = i * VAD_FRAME
        speech = probability >= threshold
        if speech and pause is not None:  # speech again: the pause is over
            if at - pause > min_pause_at_max:
                pauses.append((pause, at - pause))
            pause = None
        if start is None:
            if speech:
                start = at
            continue
        if at - start > max_speech:  # too long: cut it
            if pauses:
                cut, length = max(pauses, key=lambda p: p[1])  # the first of the longest
                found.append([start, cut])
                start, pause, pauses = cut + length, None, []
            else:
                found.append([start, at])
                start, pause, pauses = None, None, []
                continue
        if probability < negative:
            if pause is None:
                pause = at
            if at - pause >= min_silence:  # the pause ends the segment where it began
                if pause - start > min_speech:
                    found.append([start, pause])
                start, pause, pauses = None, None, []
    if start is not None and num_samples - start > min_speech:
        found.append([start, num_samples])
    return _padded(found, num_samples, pad)


def find_speech(
    wave: np.ndarray,
    sample_rate: int,
    threshold: float = 0.5,
    min_speech_ms: float = 250,
    min_silence_ms: float = 100,
    speech_pad_ms: float = 30,
    max_segment_s: float = float("inf"),
) -> list[tuple[int, int]]:
    """Find the speech segments of a mono recording at any rate (resampled to 16 kHz to detect).

    Args:
        wave: the recording, mono.
        sample_rate: its rate.
        threshold: the probability at or above which a frame is speech.
        min_speech_ms: segments this long or shorter are dropped.
        min_silence_ms: the pause that ends a segment.
        speech_pad_ms: added to both ends of each segment.
        max_segment_s: longer speech is cut into several segments.

    Returns:
        (first sample, end sample) of each speech segment, in samples of `wave`.
    """
    if len(wave) == 0:
        return []
    audio = np.asarray(wave, dtype=np.float32)
    if sample_rate != VAD_SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, sample_rate, VAD_SAMPLE_RATE).astype(np.float32)
    spans = speech_spans(
        speech_probabilities(audio),
        len(audio),
        threshold=threshold,
        min_speech_ms=min_speech_ms,
        min_silence_ms=min_silence_ms,
        speech_pad_ms=speech_pad_ms,
        max_segment_s=max_segment_s,
    )
    scale = sample_rate / VAD_SAMPLE_RATE
    segments = []
    for start, end in spans:
        first, last = min(len(wave), int(round(start * scale))), min(len(wave), int(round(end * scale)))
        if last > first:
            segments.append((first, last))
    return segments


def _padded(found: list[list[int]], num_samples: int, pad: float) -> list[tuple[int, int]]:
    """Widen each segment by `pad` samples, or by half the gap to a neighbour closer than 2 x pad.

    Returns:
        The padded (first sample, end sample) of each segment, within the recording.
    """
    if found:
        found[0][0] = int(max(0, found[0][0] - pad))
    for segment, following in zip(found, found[1:], strict=False):
        gap = following[0] - segment[1]
        grow = gap // 2 if gap < 2 * pad else pad
        segment[1] = int(segment[1] + grow)
        following[0] = int(max(0, following[0] - grow))
    if found:
        found[-1][1] = int(min(num_samples, found[-1][1] + pad))
    return [(a, b) for a, b in found]
