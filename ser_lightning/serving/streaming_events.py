"""The messages of WS /v1/stream, as Pydantic models (WebSocket is not in OpenAPI: docs/serving.md lists them).

The client sends binary frames of 16 kHz mono PCM (`format=s16le`, the default: little-endian
int16; `format=f32le`: little-endian float32 in [-1, 1]) and, to finish, the text frame
`{"type": "end"}`. The server sends JSON text frames, each one of these models, told apart by
`type`: `ready` once, then `partial` and `segment` events in stream order, then `end`, or an
`error` right before it closes the connection with the error's `close_code`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# close codes (RFC 6455 section 7.4.1) the stream ends with
CLOSE_NORMAL = 1000  # the client sent {"type": "end"} and every event was sent
CLOSE_UNSUPPORTED = 1003  # a text frame that is not {"type": "end"}
CLOSE_INVALID_DATA = 1007  # a binary frame that is not whole samples, or samples that are not finite
CLOSE_POLICY = 1008  # a bad setting in the URL, a page of another origin, or the idle timeout
CLOSE_TOO_BIG = 1009  # a binary frame over stream.max_frame_bytes
CLOSE_INTERNAL = 1011  # scoring failed
CLOSE_TRY_LATER = 1013  # stream.max_streams streams are open already
# no key and no valid ticket on a server with an API key (4000-4999: the application's own codes;
# 4401 mirrors HTTP 401, as graphql-ws and other WebSocket protocols use it)
CLOSE_UNAUTHORIZED = 4401


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamReady(_Event):
    """Sent once when the stream is accepted: what to send, and the limits."""

    type: Literal["ready"] = "ready"
    sample_rate: int = Field(description="the rate to send: 16000 Hz, mono")
    format: Literal["s16le", "f32le"] = Field(description="the sample format the server expects")
    frame_samples: int = Field(
        description="the detector's frame (512 samples, 32 ms): chunks of any length are fine"
    )
    labels: list[str] = Field(
        description="the emotions, in the order of the probabilities; empty for a task=dimensional model"
    )
    update_ms: float = Field(description="the least audio between two partial events of one segment")
    max_segment_s: float = Field(description="speech longer than this is cut into forced segments")
    idle_timeout_s: float = Field(description="a stream silent (no frames) this long is closed")
    max_frame_bytes: int = Field(description="the largest binary frame accepted")


class StreamEmotion(_Event):
    """A `segment` (finished speech) or a `partial` (the open segment so far) and its emotion."""

    type: Literal["segment", "partial"] = Field(
        description="segment: a finished speech segment (final); partial: the open segment so far"
    )
    index: int = Field(ge=0, description="the segment's number in the stream, from 0")
    start_s: float = Field(ge=0.0, description="where the segment starts, in seconds of audio sent")
    end_s: float = Field(ge=0.0, description="where it ends (a partial: the audio so far)")
    emotion: str | None = Field(
        None, description="the most probable emotion; absent for a task=dimensional model (no classes)"
    )
    confidence: float | None = Field(None, ge=0.0, le=1.0, description="that emotion's probability")
    probabilities: dict[str, float] | None = Field(
        None, description="a probability per emotion, in the model's label order"
    )
    forced: bool = Field(False, description="a segment cut at max_segment_s while the speech went on")
    emotion_set: list[str] | None = Field(
        None, description="the conformal set (calibration=conformal models)"
    )
    set_coverage: float | None = Field(None, description="the coverage emotion_set was fitted for")
    dimensions: dict[str, float] | None = Field(
        None,
        description="arousal, valence and dominance on the training corpus's scale (GET /v1/model's "
        "dimension_scale), for models that predict them (task=dimensional or multitask)",
    )


class StreamEnd(_Event):
    """The last event of a stream the client ended with `{"type": "end"}`."""

    type: Literal["end"] = "end"
    segments: int = Field(ge=0, description="speech segments sent")
    duration_s: float = Field(ge=0.0, description="seconds of audio received")


class StreamError(_Event):
    """Why the server closes the stream; the connection closes with `close_code` right after."""

    type: Literal["error"] = "error"
    code: str = Field(
        description="unauthorized, too_many_streams, bad_setting, bad_frame, frame_too_large, bad_message, "
        "idle_timeout, scoring_failed"
    )
    detail: str = Field(description="what is wrong and how to fix it")
    close_code: int = Field(description="the WebSocket close code that follows")


STREAM_EVENTS = (StreamReady, StreamEmotion, StreamEnd, StreamError)
