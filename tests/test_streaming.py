"""WS /v1/stream over the tiny served model: demo clips separated by silence, streamed in chunks,
come back as one segment event per clip, in order, each with what predict gives for a file of the
segment's own samples; partials come at most every update_ms; the limits and bad frames end the
stream with an error event and their close code. The segmenter itself is checked on the same
audio: causal (any chunking gives the same cuts) and forced cuts at max_segment_s."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from ser_lightning.serving.server import build_app
from ser_lightning.serving.streaming import STREAM_SAMPLE_RATE, StreamSegmenter, StreamSettings
from ser_lightning.utils.errors import InvalidSetting

from .helpers.serving import serve_config
from .test_serving import run_predict

CLIP_EMOTIONS = ("01", "05", "04")  # neutral, angry, sad: one clip each, in this order
GAP_S = 1.0
UPDATE_MS = 300
WS = "ws://localhost/v1/stream"  # the Host the server answers to (TestClient says testserver)


def recording(
    root, emotions=CLIP_EMOTIONS, gap_s: float = GAP_S
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Demo clips of Actor 11 with `gap_s` of silence around each: the 16 kHz samples, each clip's span (s)."""
    silence = np.zeros(int(gap_s * STREAM_SAMPLE_RATE), np.float32)
    parts, spans, at = [silence], [], gap_s
    for emotion in emotions:
        wave, rate = sf.read(root / f"Actor_11/03-01-{emotion}-01-01-01-11.wav", dtype="float32")
        assert rate == STREAM_SAMPLE_RATE
        parts += [wave, silence]
        spans.append((at, at + len(wave) / rate))
        at += len(wave) / rate + gap_s
    return np.concatenate(parts), spans


def s16le(wave: np.ndarray) -> bytes:
    return (np.clip(wave, -1, 1) * 32767).round().astype("<i2").tobytes()


@pytest.fixture(scope="module")
def trained(tiny_served_model):
    return tiny_served_model


@pytest.fixture(scope="module")
def client(trained, tmp_path_factory):
    cfg = serve_config(
        trained,
        tmp_path_factory.mktemp("stream_run"),
        "web=false",
        f"stream.update_ms={UPDATE_MS}",
        "stream.max_streams=1",
        "stream.idle_timeout_s=1.5",
        "stream.max_frame_bytes=16384",
    )
    with TestClient(build_app(cfg, environ={}), base_url="http://localhost") as test_client:
        yield test_client


def stream(client, data: bytes, chunk_bytes: int = 3200, query: str = "format=s16le") -> list[dict]:
    """Send `data` in chunks (100 ms of s16le), then {"type": "end"}: every event the server sent."""
    with client.websocket_connect(f"{WS}?{query}") as ws:
        events = [ws.receive_json()]
        for at in range(0, len(data), chunk_bytes):
            ws.send_bytes(data[at : at + chunk_bytes])
        ws.send_text(json.dumps({"type": "end"}))
        while events[-1]["type"] not in ("end", "error"):
            events.append(ws.receive_json())
        closing = ws.receive()
    assert closing["type"] == "websocket.close"
    return events + [{"close": closing["code"]}]


# --------------------------------------------------------------------------- events
def test_each_clip_is_one_segment_event_in_order_with_predicts_probabilities(client, trained, tmp_path):
    wave, spans = recording(trained.root)
    events = stream(client, s16le(wave))
    assert (
        events[0]["type"] == "ready" and events[0]["sample_rate"] == 16000 and events[0]["format"] == "s16le"
    )
    assert events[-2]["type"] == "end" and events[-1] == {"close": 1000}
    segments = [e for e in events if e.get("type") == "segment"]
    assert [s["index"] for s in segments] == list(range(len(spans)))
    assert events[-2]["segments"] == len(spans)
    assert events[-2]["duration_s"] == pytest.approx(len(wave) / STREAM_SAMPLE_RATE, abs=0.04)
    for segment, (start, end) in zip(segments, spans, strict=True):
        # each segment lies on its clip (the detector trims or pads the clip's quiet edges)
        assert start - 0.3 <= segment["start_s"] < segment["end_s"] <= end + 0.3
        assert segment["end_s"] - segment["start_s"] > 0.5 * (end - start)
        assert not segment["forced"]
        assert segment["emotion"] == max(segment["probabilities"], key=segment["probabilities"].get)
    # a segment's event is what predict gives for a file holding exactly the samples it spans,
    # as the server received them (int16)
    received = np.frombuffer(s16le(wave), "<i2").astype(np.float32) / 32768
    files = []
    for i, segment in enumerate(segments):
        a, b = round(segment["start_s"] * 16000), round(segment["end_s"] * 16000)
        files.append(tmp_path / f"segment{i}.wav")
        sf.write(files[-1], received[a:b], 16000, subtype="FLOAT")
    for segment, want in zip(segments, run_predict(trained, tmp_path / "predict", files), strict=True):
        assert segment["emotion"] == want["predicted"]
        np.testing.assert_allclose(
            list(segment["probabilities"].values()), list(want["probabilities"].values()), atol=1e-5
        )


def test_partials_come_at_most_every_update_ms_before_their_segment(client, trained):
    wave, _ = recording(trained.root)
    events = [e for e in stream(client, s16le(wave)) if e.get("type") in ("partial", "segment")]
    partials = [e for e in events if e["type"] == "partial"]
    assert partials, "1.5 s clips with update_ms=300 must get partial events"
    finished = set()
    for event in events:
        assert event["index"] not in finished  # nothing of a segment after its final event
        if event["type"] == "segment":
            finished.add(event["index"])
    for index in finished:
        ends = [p["end_s"] for p in partials if p["index"] == index]
        assert all(b - a >= UPDATE_MS / 1000 - 1e-6 for a, b in zip(ends, ends[1:], strict=False))
        segment = next(e for e in events if e["type"] == "segment" and e["index"] == index)
        assert all(segment["start_s"] <= e <= segment["end_s"] + 0.3 for e in ends)


def test_the_same_samples_as_float32_in_other_chunks_give_the_same_segments(client, trained):
    wave, _ = recording(trained.root, CLIP_EMOTIONS[:2])
    received = np.frombuffer(s16le(wave), "<i2").astype(np.float32) / 32768
    as_int = [e for e in stream(client, s16le(wave)) if e.get("type") == "segment"]
    as_float = [
        e
        for e in stream(client, received.astype("<f4").tobytes(), chunk_bytes=4 * 1234, query="format=f32le")
        if e.get("type") == "segment"
    ]
    assert [(e["start_s"], e["end_s"], e["emotion"]) for e in as_float] == [
        (e["start_s"], e["end_s"], e["emotion"]) for e in as_int
    ]


# --------------------------------------------------------------------------- limits and errors
def closed_with(client, send, query: str = "format=s16le") -> tuple[dict, int]:
    """Open a stream, let `send(ws)` misbehave: the error event and the close code."""
    with client.websocket_connect(f"{WS}?{query}") as ws:
        first = ws.receive_json()
        if first["type"] == "ready":
            send(ws)
            first = ws.receive_json()
        closing = ws.receive()
    assert first["type"] == "error" and closing["type"] == "websocket.close"
    assert first["close_code"] == closing["code"]
    return first, closing["code"]


@pytest.mark.parametrize(
    ("query", "send", "code", "said"),
    [
        ("format=s16le", lambda ws: ws.send_bytes(b"\x00\x01\x02"), 1007, "not whole s16le samples"),
        (
            "format=f32le",
            lambda ws: ws.send_bytes(np.array([0.1, np.nan], "<f4").tobytes()),
            1007,
            "not finite",
        ),
        ("format=s16le", lambda ws: ws.send_bytes(bytes(16386)), 1009, "stream.max_frame_bytes=16,384"),
        (
            "format=s16le",
            lambda ws: ws.send_text('{"type": "stop"}'),
            1003,
            '{"type": "end"} ends the stream',
        ),
        ("format=s24le", None, 1008, "use s16le"),
        ("format=s16le&sample_rate=48000", None, 1008, "at 16000 Hz"),
        ("format=s16le", lambda ws: None, 1008, "stream.idle_timeout_s"),
    ],
)
def test_bad_frames_settings_and_silence_get_an_error_event_and_close_code(client, query, send, code, said):
    error, closed = closed_with(client, send, query)
    assert closed == code and said in error["detail"]


def test_more_streams_than_max_streams_are_refused_and_the_next_one_is_served(client):
    with client.websocket_connect(WS) as first:
        assert first.receive_json()["type"] == "ready"
        with client.websocket_connect(WS) as second:
            error = second.receive_json()
            assert error["code"] == "too_many_streams" and second.receive()["code"] == 1013
        first.send_text('{"type": "end"}')
        assert first.receive_json()["type"] == "end"
    with client.websocket_connect(WS) as third:  # the first one's slot is free again
        assert third.receive_json()["type"] == "ready"


def test_a_page_of_another_origin_cannot_open_a_stream(client):
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(WS, headers={"origin": "http://evil.example"}):
            pass
    assert refused.value.code == 1008
    with client.websocket_connect(WS, headers={"origin": "http://localhost"}) as own_page:
        assert own_page.receive_json()["type"] == "ready"


# --------------------------------------------------------------------------- the segmenter
def cuts_of(wave: np.ndarray, settings: StreamSettings, chunk: int) -> list[tuple]:
    segmenter = StreamSegmenter(settings)
    cuts = []
    for at in range(0, len(wave), chunk):
        cuts += segmenter.feed(wave[at : at + chunk])
    cuts += segmenter.finish()
    return [(c.kind, c.start, c.end, c.index, c.forced) for c in cuts]


def test_segmentation_is_causal_and_cuts_long_speech_at_max_segment_s(trained):
    wave, spans = recording(trained.root, CLIP_EMOTIONS[:2], gap_s=0.6)
    settings = StreamSettings(max_segment_s=0.7, update_ms=200)
    cuts = cuts_of(wave, settings, 1600)
    # the same audio in other chunk sizes gives the same cuts: a cut never depends on later audio
    assert cuts_of(wave, settings, 517) == cuts and cuts_of(wave, settings, 16000) == cuts
    segments = [c for c in cuts if c[0] == "segment"]
    forced = [c for c in segments if c[4]]
    assert forced and all(0.7 * 16000 <= c[2] - c[1] < 0.7 * 16000 + 512 for c in forced)  # a frame's grain
    # a forced cut goes straight on: the next segment starts where it ended
    for c in forced:
        assert any(n[1] == c[2] for n in segments), c
    assert [c[3] for c in segments] == list(range(len(segments)))
    # each clip is covered by its segments
    for start, end in spans:
        covered = [c for c in segments if c[1] < end * 16000 and c[2] > start * 16000]
        assert covered and sum(c[2] - c[1] for c in covered) > 0.5 * (end - start) * 16000


def test_stream_settings_name_the_bad_setting():
    with pytest.raises(InvalidSetting, match=r"stream.max_streams=0 must be at least 1"):
        StreamSettings(max_streams=0)
    with pytest.raises(InvalidSetting, match=r"stream.update_ms"):
        StreamSettings.from_config({"update_ms": -5})
    with pytest.raises(InvalidSetting, match=r"stream.updates is not a setting"):
        StreamSettings.from_config({"updates": 1})


# --------------------------------------------------------------------------- a real server
def test_the_python_client_streams_to_the_real_server_and_gets_the_same_events(client, trained, tmp_path):
    """uvicorn (over wsproto) and `StreamClient` give what the in-process TestClient gives."""
    import asyncio

    from ser_lightning.serving.streaming_client import StreamClient

    from .helpers.serving import served

    wave, spans = recording(trained.root, CLIP_EMOTIONS[:2])
    data = s16le(wave)
    want = [e for e in stream(client, data) if e.get("type") in ("segment", "end")]

    async def run(url: str) -> tuple[list[dict], int | None]:
        ws = await StreamClient.connect(url.replace("http://", "ws://") + "/v1/stream?format=s16le")
        events = [await ws.event()]
        for at in range(0, len(data), 3200):
            await ws.send_audio(data[at : at + 3200])
        await ws.end()
        events += [e async for e in ws.events()]
        return events, ws.close_code

    with served(trained, tmp_path / "run", "web=false", "log_level=warning") as (url, _, _):
        events, code = asyncio.run(run(url))
        with pytest.raises(ConnectionError, match="HTTP 403"):  # a page of another origin
            asyncio.run(
                StreamClient.connect(
                    url.replace("http://", "ws://") + "/v1/stream", {"origin": "http://evil.example"}
                )
            )
    assert events[0]["type"] == "ready" and code == 1000
    got = [e for e in events if e["type"] in ("segment", "end")]
    assert [(e["type"], e.get("start_s"), e.get("end_s"), e.get("emotion")) for e in got] == [
        (e["type"], e.get("start_s"), e.get("end_s"), e.get("emotion")) for e in want
    ]
    assert len([e for e in got if e["type"] == "segment"]) == len(spans)
