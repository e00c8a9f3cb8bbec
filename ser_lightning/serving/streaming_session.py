"""WS /v1/stream: live audio in, an emotion event per speech segment out.

A client opens `ws://HOST/v1/stream?format=s16le` (or `f32le`; `sample_rate`, when given, must
be 16000), gets a `ready` event, and sends 16 kHz mono PCM as binary frames of any length.
`serving.streaming` cuts the speech as it arrives; each cut is scored by the service's own
path (`EmotionService`: the predictor's windows of the segment, as a file holding only that
segment, through the dynamic batcher shared with POST /v1/predict) and answered as a
`serving.streaming_events` model, in stream order. A partial event is skipped while the
stream's earlier events are still being scored, so a slow server sends fewer partials rather
than late ones; segments are never skipped. The client ends with the text frame
`{"type": "end"}`: the open segment is scored, then `end` is sent and the connection closes
with 1000.

Limits: `stream.max_streams` streams at once (one more gets an `error` and close code 1013),
frames over `stream.max_frame_bytes` (1009), frames that are not whole samples or hold
non-finite samples (1007), other text messages (1003), and `stream.idle_timeout_s` without a
frame (1008). A page of another origin than the server's own (or `cors_origins`) is refused
before the connection opens, as browsers let any page open a WebSocket. On a server with an API
key, a stream needs the key in the handshake's headers or a stream ticket (`?ticket=`, from
POST /v1/stream/tickets; `serving.stream_tickets`); without either it gets an `unauthorized`
error and close code 4401, which a browser page can read (a refused handshake it cannot).
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ser_lightning.serving.service import Decoded, EmotionService
from ser_lightning.serving.stream_tickets import TICKET_PARAMETER, StreamTickets, stream_refusal
from ser_lightning.serving.streaming import (
    STREAM_SAMPLE_RATE,
    VAD_FRAME,
    Cut,
    StreamSegmenter,
    StreamSettings,
)
from ser_lightning.serving.streaming_events import (
    CLOSE_INTERNAL,
    CLOSE_INVALID_DATA,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_LATER,
    CLOSE_UNAUTHORIZED,
    CLOSE_UNSUPPORTED,
    StreamEmotion,
    StreamEnd,
    StreamError,
    StreamReady,
)

log = logging.getLogger(__name__)

SAMPLE_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


class StreamClosed(Exception):
    """The stream ends with an error event: `code`, `detail` and the WebSocket close code."""

    def __init__(self, code: str, detail: str, close_code: int):
        super().__init__(detail)
        self.code, self.detail, self.close_code = code, detail, close_code


def decode_frame(data: bytes, sample_format: str, max_bytes: int) -> np.ndarray:
    """Turn one binary frame into float32 samples in [-1, 1].

    Args:
        data: the frame's bytes.
        sample_format: "s16le" or "f32le".
        max_bytes: the largest frame accepted.

    Returns:
        The samples.

    Raises:
        StreamClosed: for a frame over `max_bytes`, one that is not whole samples, or float
            samples that are not finite.
    """
    dtype = SAMPLE_FORMATS[sample_format]
    if len(data) > max_bytes:
        raise StreamClosed(
            "frame_too_large",
            f"a binary frame of {len(data):,} bytes is over stream.max_frame_bytes={max_bytes:,}; send shorter chunks "
            f"(e.g. 100 ms: {STREAM_SAMPLE_RATE // 10 * dtype.itemsize} bytes of {sample_format})",
            CLOSE_TOO_BIG,
        )
    if len(data) % dtype.itemsize:
        raise StreamClosed(
            "bad_frame",
            f"a binary frame of {len(data)} bytes is not whole {sample_format} samples ({dtype.itemsize} bytes each); "
            "send 16 kHz mono PCM, each frame a whole number of samples",
            CLOSE_INVALID_DATA,
        )
    samples = np.frombuffer(data, dtype=dtype)
    if sample_format == "s16le":
        return samples.astype(np.float32) / 32768.0
    if not np.isfinite(samples).all():
        raise StreamClosed(
            "bad_frame",
            "a binary frame holds samples that are not finite (NaN or infinity); f32le samples lie in [-1, 1]",
            CLOSE_INVALID_DATA,
        )
    return np.clip(samples, -1.0, 1.0).astype(np.float32)


class StreamHub:
    """The streams of one application: who may open one, their count, the detector threads, the scoring.

    Args:
        service: the model behind the streams.
        settings: the `stream` block's limits.
        cors_origins: origins besides the server's own whose pages may open a stream.
        api_key: the key a stream's handshake must carry when it has no ticket; None: no key.
        tickets: the stream tickets this server issued (a new book when None).
    """

    def __init__(
        self,
        service: EmotionService,
        settings: StreamSettings,
        cors_origins: tuple[str, ...] = (),
        api_key: str | None = None,
        tickets: StreamTickets | None = None,
    ):
        self.service = service
        self.settings = settings
        self.allowed_origins = {o.rstrip("/").lower() for o in cors_origins}
        self.api_key = api_key
        self.tickets = tickets if tickets is not None else StreamTickets()
        self.active = 0
        self.refused = 0
        self._detectors = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ser-vad")

    def close(self) -> None:
        """Stop the detector threads (at application shutdown)."""
        self._detectors.shutdown(wait=True)

    def origin_allowed(self, websocket: WebSocket) -> bool:
        """Tell whether a browser page may open this stream: no Origin, the server's own, or a listed one.

        Returns:
            True when the connection may open.
        """
        origin = websocket.headers.get("origin")
        if origin is None:
            return True
        host = websocket.headers.get("host", "").lower()
        return (host != "" and urlsplit(origin).netloc.lower() == host) or origin.rstrip(
            "/"
        ).lower() in self.allowed_origins

    async def score(self, cut: Cut) -> StreamEmotion:
        """Score a cut as the service scores a file holding only those samples.

        Returns:
            The cut's event.
        """
        service = self.service
        wave = cut.audio
        rate = service.predictor.audio.sample_rate
        if rate != STREAM_SAMPLE_RATE:
            import soxr

            wave = soxr.resample(wave, STREAM_SAMPLE_RATE, rate).astype(np.float32)
        name = f"stream segment {cut.index}"
        clip = service.predictor.windows(wave, name, service.hop, service.settings.long_clips)
        record = await service._score(Decoded(name, len(wave) / rate, clip))
        return StreamEmotion(
            type=cut.kind,
            index=cut.index,
            start_s=round(cut.start / STREAM_SAMPLE_RATE, 3),
            end_s=round(cut.end / STREAM_SAMPLE_RATE, 3),
            emotion=record.get("emotion"),  # none from a task=dimensional model: its dimensions only
            confidence=record.get("confidence"),
            probabilities=record.get("probabilities"),
            forced=cut.forced,
            emotion_set=record.get("emotion_set"),
            set_coverage=record.get("set_coverage"),
            dimensions=record.get("dimensions"),
        )

    async def serve(self, websocket: WebSocket) -> None:
        """Run one stream from the handshake to the close (the route's body).

        Raises:
            StreamClosed: never (every refusal is sent as an error event and closes the stream).
        """
        if not self.origin_allowed(websocket):
            await websocket.close(code=CLOSE_POLICY)  # before accept: the handshake gets 403
            return
        await websocket.accept()
        try:
            # after the handshake, so that a browser page learns why (it cannot read a refused handshake)
            refusal = stream_refusal(self.api_key, self.tickets, websocket.headers, websocket.query_params)
            if refusal is not None:
                raise StreamClosed("unauthorized", refusal, CLOSE_UNAUTHORIZED)
            sample_format = self._format(websocket)
            if self.active >= self.settings.max_streams:
                self.refused += 1
                raise StreamClosed(
                    "too_many_streams",
                    f"{self.active} streams are open, the most this server takes (stream.max_streams); retry later",
                    CLOSE_TRY_LATER,
                )
            self.active += 1
            try:
                await self._run(websocket, sample_format)
            finally:
                self.active -= 1
        except StreamClosed as err:
            await self._close(websocket, err)
        except WebSocketDisconnect:
            pass

    @staticmethod
    def _format(websocket: WebSocket) -> str:
        query = websocket.query_params
        sample_format = query.get("format", "s16le")
        if sample_format not in SAMPLE_FORMATS:
            raise StreamClosed(
                "bad_setting",
                f"format={sample_format!r} is not a sample format of this stream; use s16le (little-endian int16) "
                "or f32le (little-endian float32)",
                CLOSE_POLICY,
            )
        rate = query.get("sample_rate", str(STREAM_SAMPLE_RATE))
        if rate != str(STREAM_SAMPLE_RATE):
            raise StreamClosed(
                "bad_setting",
                f"sample_rate={rate} is not taken: send mono audio at {STREAM_SAMPLE_RATE} Hz (resample it first)",
                CLOSE_POLICY,
            )
        unknown = sorted(set(query) - {"format", "sample_rate", TICKET_PARAMETER})
        if unknown:
            raise StreamClosed(
                "bad_setting",
                f"{unknown[0]!r} is not a setting of /v1/stream; it takes format, sample_rate and ticket",
                CLOSE_POLICY,
            )
        return sample_format

    async def _run(self, websocket: WebSocket, sample_format: str) -> None:
        settings, loop = self.settings, asyncio.get_running_loop()
        segmenter = await loop.run_in_executor(self._detectors, StreamSegmenter, settings)
        await websocket.send_text(
            StreamReady(
                sample_rate=STREAM_SAMPLE_RATE,
                format=sample_format,
                frame_samples=VAD_FRAME,
                labels=list(self.service.labels),
                update_ms=settings.update_ms,
                max_segment_s=settings.max_segment_s,
                idle_timeout_s=settings.idle_timeout_s,
                max_frame_bytes=settings.max_frame_bytes,
            ).model_dump_json()
        )
        jobs: asyncio.Queue[Cut | None] = asyncio.Queue()
        scoring = [False]  # whether the sender is scoring an event now
        sender = asyncio.create_task(self._send_events(websocket, jobs, scoring))
        try:
            while True:
                message = await self._receive(websocket, sender)
                if message.get("bytes") is not None:
                    samples = decode_frame(message["bytes"], sample_format, settings.max_frame_bytes)
                    cuts = await loop.run_in_executor(self._detectors, segmenter.feed, samples)
                elif message.get("text") is not None:
                    self._check_end(message["text"])
                    cuts = segmenter.finish()
                else:  # pragma: no cover (a websocket.receive message holds bytes or text)
                    continue
                for cut in cuts:
                    # a partial waits for nobody: skipped while earlier events are still being scored
                    if cut.kind == "segment" or (jobs.empty() and not scoring[0]):
                        jobs.put_nowait(cut)
                if message.get("text") is not None:
                    break
            jobs.put_nowait(None)
            await sender
            end = StreamEnd(
                segments=segmenter.segments, duration_s=round(segmenter.received / STREAM_SAMPLE_RATE, 3)
            )
            await websocket.send_text(end.model_dump_json())
            await websocket.close(code=CLOSE_NORMAL)
        finally:
            if not sender.done():
                sender.cancel()

    async def _receive(self, websocket: WebSocket, sender: asyncio.Task) -> dict:
        """Wait for the client's next message, or for the idle timeout, or for scoring to fail.

        Returns:
            The ASGI `websocket.receive` message.

        Raises:
            StreamClosed: at the idle timeout, or when scoring failed.
            WebSocketDisconnect: when the client went away.
        """
        receive = asyncio.ensure_future(websocket.receive())
        done, _ = await asyncio.wait(
            {receive, sender}, timeout=self.settings.idle_timeout_s, return_when="FIRST_COMPLETED"
        )
        if sender in done:
            receive.cancel()
            sender.result()  # raises the scoring's StreamClosed
        if receive not in done:
            receive.cancel()
            raise StreamClosed(
                "idle_timeout",
                f"no audio for {self.settings.idle_timeout_s:g} s (stream.idle_timeout_s): send frames continuously, "
                'silence included, and {"type": "end"} to finish',
                CLOSE_POLICY,
            )
        message = receive.result()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        return message

    @staticmethod
    def _check_end(text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not (isinstance(message, dict) and message.get("type") == "end" and len(message) == 1):
            raise StreamClosed(
                "bad_message",
                f"the text message {text[:80]!r} is not one this stream takes: audio goes in binary frames, and "
                '{"type": "end"} ends the stream',
                CLOSE_UNSUPPORTED,
            )

    async def _send_events(self, websocket: WebSocket, jobs: asyncio.Queue, scoring: list[bool]) -> None:
        while (cut := await jobs.get()) is not None:
            scoring[0] = True
            try:
                event = await self.score(cut)
            except Exception:  # noqa: BLE001 (the client gets an error event; the log the traceback)
                log.exception("scoring a stream's %s failed", cut.kind)
                raise StreamClosed(
                    "scoring_failed", "the server failed to score the stream's audio", CLOSE_INTERNAL
                ) from None
            finally:
                scoring[0] = False
            await websocket.send_text(event.model_dump_json(exclude_none=True))

    @staticmethod
    async def _close(websocket: WebSocket, err: StreamClosed) -> None:
        if websocket.application_state != WebSocketState.CONNECTED:
            return
        try:
            event = StreamError(code=err.code, detail=err.detail, close_code=err.close_code)
            await websocket.send_text(event.model_dump_json())
            await websocket.close(code=err.close_code)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the client went away first
