"""Crafted requests against the real server on a loopback port (uvicorn with the project's own
protocol, limits and guards, in a thread of this process): the page reads nothing but what was
uploaded through it, hosts and origins that are not the server's are refused, playlists are not
decoded, failed uploads leave nothing on disk, the key is checked before the body is read, slow
clients are cut off, rate and channel bombs are refused from their headers, and no reply names a
path on the server.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from .helpers.serving import served

API_KEY = "a-test-key-of-32-characters-long"
LISTED_ORIGIN = "http://app.example:3000"
# a concat list that names itself, as the server names a raw body (FFmpeg would open it again and again)
SELF_LISTING = b"ffconcat version 1.0\nfile upload.media\n"


@pytest.fixture(scope="module")
def server(tiny_served_model, tmp_path_factory):
    """The server with a 2 MB body limit, short header and body deadlines, at most 6 connections,
    one listed origin, and uploads in a folder of its own."""
    folder = tmp_path_factory.mktemp("security_server")
    uploads = folder / "uploads"
    uploads.mkdir()
    with served(
        tiny_served_model,
        folder / "run",
        "max_upload_mb=2",
        f"upload_dir={uploads}",
        f"cors_origins=[{LISTED_ORIGIN}]",
        "limits.header_timeout_s=2",
        "limits.body_timeout_s=2",
        "limits.max_connections=6",
        "log_level=warning",
    ) as (url, app, _):
        yield Server(url, app, uploads, tiny_served_model)


@contextmanager
def keyed_server(model, tmp_path: Path):
    """The server with SER_API_KEY set, for the tests of the key."""
    with served(model, tmp_path / "run", "log_level=warning", environ={"SER_API_KEY": API_KEY}) as (
        url,
        app,
        _,
    ):
        yield Server(url, app, tmp_path, model)


class Server:
    def __init__(self, url: str, app, uploads: Path, model):
        self.url, self.app, self.uploads, self.model = url, app, uploads, model
        self.port = int(url.rsplit(":", 1)[1])

    @property
    def page_cache(self) -> Path:
        return Path(self.app.state.page_cache)

    def clip(self, index: int = 0) -> Path:
        return sorted((self.model.root / "Actor_11").glob("*.wav"))[index]

    def server_paths(self) -> list[str]:
        """Folders of the server that replies must never name."""
        return [str(self.uploads), str(self.page_cache), tempfile.gettempdir(), str(self.model.ckpt.parent)]


def assert_names_no_server_path(text: str, server: Server) -> None:
    for path in server.server_paths():
        assert path not in text, f"{path} appears in the reply: {text}"


# --------------------------------------------------------------------------- the page's functions
def page_event(server: Server, trigger: str) -> tuple[int, int]:
    """(fn_index, trigger_id) of the page's function run by `trigger` (e.g. 'upload')."""
    config = httpx.get(f"{server.url}/config", timeout=30, cookies=getattr(server, "cookies", None)).json()
    for index, dependency in enumerate(config["dependencies"]):
        for target, event in dependency["targets"]:
            if event == trigger:
                return dependency.get("id", index), target
    raise AssertionError(f"the page has no {trigger} event")


def call_page(server: Server, file_data: dict, cookies=None) -> dict:
    """Call the page's analysis the way the page's own script does (queue/join, then the event
    stream) with `file_data` as the recording: the final message of the event stream."""
    fn_index, trigger = page_event(server, "upload")
    session = uuid.uuid4().hex[:11]
    joined = httpx.post(
        f"{server.url}/gradio_api/queue/join",
        json={
            "data": [file_data, False],
            "fn_index": fn_index,
            "trigger_id": trigger,
            "session_hash": session,
            "event_data": None,
        },
        cookies=cookies,
        timeout=30,
    )
    assert joined.status_code == 200, joined.text
    with httpx.stream(
        "GET",
        f"{server.url}/gradio_api/queue/data",
        params={"session_hash": session},
        cookies=cookies,
        timeout=60,
    ) as events:
        for line in events.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    return message
    raise AssertionError("the event stream ended without a result")


def server_file(path: Path | str) -> dict:
    return {"path": str(path), "orig_name": "clip.wav", "meta": {"_type": "gradio.FileData"}}


def upload_to_page(server: Server, path: Path, cookies=None) -> str:
    return upload_to_page_bytes(server, path.name, path.read_bytes(), cookies)


def upload_to_page_bytes(server: Server, name: str, content: bytes, cookies=None) -> str:
    """Upload through the page's own upload route: the path Gradio gives the file in its cache."""
    reply = httpx.post(
        f"{server.url}/gradio_api/upload", files={"files": (name, content)}, cookies=cookies, timeout=30
    )
    assert reply.status_code == 200, reply.text
    return reply.json()[0]


def files_holding(folder: Path, content: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.read_bytes() == content]


@pytest.fixture
def outside_secret(tmp_path) -> Path:
    """A real recording the server can read but nobody uploaded."""
    path = tmp_path / "secret.wav"
    sf.write(path, (0.3 * np.sin(np.arange(24000) * 0.05)).astype(np.float32), 16000)
    return path


def test_the_page_scores_only_files_uploaded_through_it(server, outside_secret):
    targets = [Path("/etc/passwd"), server.model.ckpt, outside_secret]
    for target in targets:
        result = call_page(server, server_file(target))
        assert result["success"] is False, result
        assert_names_no_server_path(json.dumps(result), server)
        assert not files_holding(server.page_cache, target.read_bytes()), f"{target} was copied"
        served_copy = httpx.get(f"{server.url}/gradio_api/file={target}", timeout=30)
        assert served_copy.status_code == 403
    # the same recording, uploaded through the page, is scored, with the API's answer
    path = upload_to_page(server, outside_secret)
    assert Path(path).is_relative_to(server.page_cache)
    result = call_page(server, server_file(path))
    assert result["success"] is True, result
    with open(outside_secret, "rb") as handle:
        api = httpx.post(f"{server.url}/v1/predict", files={"file": handle}, timeout=60).json()
    assert result["output"]["data"][0]["label"] == api["emotion"]


def test_with_a_key_the_logged_in_page_still_reads_only_uploads(tiny_served_model, tmp_path):
    with keyed_server(tiny_served_model, tmp_path) as keyed:
        url = keyed.url
        assert httpx.get(f"{url}/config", timeout=30).status_code == 401
        login = httpx.post(f"{url}/login", data={"username": "ser", "password": API_KEY}, timeout=30)
        assert login.status_code == 200, login.text
        keyed.cookies = login.cookies
        result = call_page(keyed, server_file("/etc/passwd"), cookies=login.cookies)
        assert result["success"] is False
        assert not files_holding(keyed.page_cache, Path("/etc/passwd").read_bytes())
        uploaded = upload_to_page(keyed, keyed.clip(), cookies=login.cookies)
        assert call_page(keyed, server_file(uploaded), cookies=login.cookies)["success"] is True


# --------------------------------------------------------------------------- hosts and origins
def test_a_host_that_is_not_the_servers_is_refused(server):
    for host in ("evil.example", f"evil.example:{server.port}", "127.0.0.1.nip.io"):
        reply = httpx.get(f"{server.url}/health", headers={"Host": host}, timeout=30)
        assert reply.status_code == 400, host
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost"):
        assert httpx.get(f"{server.url}/health", headers={"Host": host}, timeout=30).status_code == 200


def test_pages_of_other_origins_get_no_cors_answer_and_cannot_post(server):
    clip = server.clip().read_bytes()
    for origin in ("http://localhost:3000", "http://127.0.0.1:9", "null", "https://evil.example"):
        preflight = httpx.options(
            f"{server.url}/gradio_api/queue/join",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
            timeout=30,
        )
        assert preflight.status_code == 403
        assert "access-control-allow-origin" not in preflight.headers
        page = httpx.get(f"{server.url}/config", headers={"Origin": origin}, timeout=30)
        assert page.status_code == 200
        assert not [h for h in page.headers if h.startswith("access-control-")], page.headers
        posted = httpx.post(
            f"{server.url}/v1/predict",
            files={"file": ("a.wav", clip)},
            headers={"Origin": origin},
            timeout=30,
        )
        assert posted.status_code == 403 and "cors_origins" in posted.json()["detail"]
    # the page itself (same origin) and a listed origin, which gets no credentials
    same = httpx.post(
        f"{server.url}/v1/predict",
        files={"file": ("a.wav", clip)},
        headers={"Origin": server.url},
        timeout=60,
    )
    assert same.status_code == 200
    listed = httpx.options(
        f"{server.url}/v1/predict",
        headers={
            "Origin": LISTED_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, cookie",
        },
        timeout=30,
    )
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == LISTED_ORIGIN
    assert listed.headers["access-control-allow-headers"] == "x-api-key"
    assert "access-control-allow-credentials" not in listed.headers
    answer = httpx.get(f"{server.url}/health", headers={"Origin": LISTED_ORIGIN}, timeout=30)
    assert answer.headers["access-control-allow-origin"] == LISTED_ORIGIN
    assert "access-control-allow-credentials" not in answer.headers


# --------------------------------------------------------------------------- playlists
def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_self_listing_concat_body_is_refused_at_once(server):
    before = open_descriptors()
    for _ in range(10):
        reply = httpx.post(
            f"{server.url}/v1/predict",
            content=SELF_LISTING,
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        )
        assert reply.status_code == 415
        assert "concat list" in reply.json()["detail"] and "playlists" in reply.json()["detail"]
        assert_names_no_server_path(reply.text, server)
    assert open_descriptors() <= before + 5  # no handle is left open per request
    assert not list(server.uploads.glob("ser-upload-*"))  # each upload's private copy is gone


def test_an_hls_playlist_naming_a_server_file_is_refused_by_the_page_and_the_api(
    server, outside_secret, tmp_path
):
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:1.5,\n{outside_secret}\n#EXT-X-ENDLIST\n"
    )
    result = call_page(server, server_file(upload_to_page(server, playlist)))
    assert result["success"] is False
    assert "HLS/M3U playlist" in result["output"]["error"] and "list.m3u8" in result["output"]["error"]
    assert_names_no_server_path(json.dumps(result), server)
    # the same bytes under an audio name, to the API
    disguised = httpx.post(
        f"{server.url}/v1/predict", files={"file": ("song.mp3", playlist.read_bytes())}, timeout=30
    )
    assert disguised.status_code == 415 and "HLS/M3U playlist" in disguised.json()["detail"]


# --------------------------------------------------------------------------- failed uploads
@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """This process's temporary folder, where Gradio's upload parser writes, made private."""
    folder = tmp_path / "process_tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def wait_until_empty(folder: Path, seconds: float = 30.0) -> list[Path]:
    deadline = time.monotonic() + seconds
    while (left := list(folder.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def raw_request(server: Server, head: bytes, body: bytes = b"", wait: float = 30.0) -> bytes:
    """Send bytes on a new connection; what the server answers until it closes or `wait` passes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as conn:
        conn.sendall(head + body)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and b"Connection: close" not in received[:2000]:
                    break
        except TimeoutError:
            pass
        return received


def test_failed_page_uploads_leave_no_partial_file(server, private_tmp):
    boundary = "sertestboundary"
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()

    def chunks():  # 3 MB without a declared length: cut off by the 2 MB limit while it arrives
        yield part
        for _ in range(48):
            yield b"\0" * 65536

    too_large = httpx.post(
        f"{server.url}/gradio_api/upload",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert too_large.status_code == 413
    assert wait_until_empty(private_tmp) == []
    # a malformed body: the file part's headers end, then a broken boundary line
    broken = part + b"\0" * 200_000 + f"\r\n--{boundary}\r\nbroken header line without colon\r\n\r\n".encode()
    malformed = httpx.post(
        f"{server.url}/gradio_api/upload",
        content=broken,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert malformed.status_code == 400
    assert wait_until_empty(private_tmp) == []
    # a body that stalls halfway (408 after limits.body_timeout_s)
    head = (
        f"POST /gradio_api/upload HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    stalled = raw_request(server, head, part + b"\0" * 100_000)
    assert stalled.startswith(b"HTTP/1.1 408"), stalled[:200]
    assert wait_until_empty(private_tmp) == []


# --------------------------------------------------------------------------- the key and slow clients
def test_the_api_key_is_checked_before_the_body_is_read(tiny_served_model, tmp_path):
    with keyed_server(tiny_served_model, tmp_path) as keyed:
        url = keyed.url
        head = (
            f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{keyed.port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000\r\n\r\n"
        ).encode()
        started = time.monotonic()
        answer = raw_request(keyed, head, b"--x\r\n", wait=20)  # the body never comes
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert time.monotonic() - started < 15  # answered without waiting for the body
        with open(keyed.clip(), "rb") as handle:
            allowed = httpx.post(
                f"{url}/v1/predict", files={"file": handle}, headers={"X-API-Key": API_KEY}, timeout=60
            )
        assert allowed.status_code == 200


def test_slow_headers_are_cut_off_and_connections_are_limited(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as slow:
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the headers never end
        started = time.monotonic()
        assert slow.recv(100) == b""  # closed by the server
        assert time.monotonic() - started < 20
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(6)]
    try:
        busy = httpx.get(f"{server.url}/health", timeout=30)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.headers["content-type"] == "application/problem+json"
        assert "limits.max_connections=6" in busy.json()["detail"] and busy.json()["instance"] == "/health"
    finally:
        for conn in idle:
            conn.close()
    deadline = time.monotonic() + 30
    while httpx.get(f"{server.url}/health", timeout=30).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


# --------------------------------------------------------------------------- costly uploads, paths in errors
def test_a_high_rate_many_channel_upload_is_refused_from_its_header(server, tmp_path):
    bomb = tmp_path / "bomb.flac"
    sf.write(bomb, np.zeros((96000 * 599, 2), np.float32), 96000, subtype="PCM_16")
    assert bomb.stat().st_size < 2e6  # 599 s of silence compress to a small upload
    started = time.monotonic()
    reply = httpx.post(
        f"{server.url}/v1/predict", files={"file": ("bomb.flac", bomb.read_bytes())}, timeout=60
    )
    assert reply.status_code == 422
    assert "115,008,000 samples" in reply.json()["detail"] and "57,600,000" in reply.json()["detail"]
    assert time.monotonic() - started < 10  # refused from the header, not decoded


def test_error_replies_name_no_server_path(server):
    bad = {
        "text.media": b"this is not audio at all, just some words " * 4,
        "cut.wav": server.clip().read_bytes()[:600],
        "fake.mp4": b"\0\0\0\x18ftypmp42" + b"\0" * 300,
    }
    for name, content in bad.items():
        reply = httpx.post(f"{server.url}/v1/predict", files={"file": (name, content)}, timeout=60)
        assert reply.status_code == 422, reply.text
        assert name in reply.json()["detail"]
        assert_names_no_server_path(reply.text, server)
        page = call_page(server, server_file(upload_to_page_bytes(server, name, content)))
        assert page["success"] is False
        assert name in page["output"]["error"]
        assert_names_no_server_path(json.dumps(page), server)
