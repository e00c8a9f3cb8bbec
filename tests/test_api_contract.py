"""The HTTP API keeps its own contract: the real server (a tiny trained model on a loopback port)
answers exactly what its `/openapi.json` declares.

The schemathesis fuzzer runs every check against it (CI fails on any finding); real answers
validate against the declared schemas; every error is RFC 9457 problem details with a status the
endpoint declares; the `file` field is binary (a part without a file name is the recording,
never a path the server reads); undeclared methods get 405 with `Allow`; and a full queue
answers 503 with `Retry-After` at once.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ser_lightning.serving.schemas import (
    BatchingCounts,
    Health,
    ModelInfo,
    Prediction,
    Problem,
    TimelineSegment,
    ValidationProblem,
)
from ser_lightning.serving.server import load_service

from .helpers.serving import served

API_KEY = "a-test-key-of-32-characters-long"
REPO = Path(__file__).resolve().parents[1]
FUZZER_CONFIG = REPO / "tests" / "schemathesis.toml"


@pytest.fixture(scope="module")
def server(tiny_served_model, tmp_path_factory):
    """The real server over the tiny model, with the page mounted at `/` as `make serve` runs it (its
    catch-all is what once turned wrong methods into 404); a 2 MB body limit, uploads in a folder
    of its own."""
    folder = tmp_path_factory.mktemp("contract_server")
    uploads = folder / "uploads"
    uploads.mkdir()
    with served(
        tiny_served_model, folder / "run", "max_upload_mb=2", f"upload_dir={uploads}", "log_level=warning"
    ) as (
        url,
        app,
        cfg,
    ):
        yield url, app, cfg


def clip(model, index: int = 0) -> Path:
    return sorted((model.root / "Actor_11").glob("*.wav"))[index]


def fuzz(url: str, tmp_path: Path, *options: str, max_examples: int = 25) -> subprocess.CompletedProcess:
    """`schemathesis run URL/openapi.json --checks all`, seeded, one worker, nothing stored between runs."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(FUZZER_CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        "20261207",
        "--workers",
        "1",
        "--generation-database",
        "none",
        # how long generating data takes depends on the machine's load, not on the API
        "--suppress-health-check",
        "too_slow",
        "--request-timeout",
        "120",
        *options,
    ]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)


# --------------------------------------------------------------------------- the fuzzer
def test_the_fuzzer_finds_nothing_with_every_check(server, tiny_served_model, tmp_path):
    url, _, _ = server
    done = fuzz(url, tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "4 selected / 4 total" in done.stdout and " failed" not in done.stdout, done.stdout[-3000:]
    # the same server behind its API key: the operations declare it, and a request without it gets 401
    with served(
        tiny_served_model,
        tmp_path / "keyed",
        "web=false",
        "log_level=warning",
        environ={"SER_API_KEY": API_KEY},
    ) as (
        keyed,
        _,
        _,
    ):
        done = fuzz(keyed, tmp_path, "--header", f"X-API-Key: {API_KEY}", max_examples=10)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        spec = httpx.get(f"{keyed}/openapi.json", timeout=30).json()
        assert spec["paths"]["/v1/predict"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
        assert "401" in spec["paths"]["/v1/model"]["get"]["responses"]
        assert "security" not in spec["paths"]["/health"]["get"]
        refused = httpx.get(f"{keyed}/v1/model", timeout=30)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.headers["content-type"] == "application/problem+json"
        assert "X-API-Key" in refused.json()["detail"]


# --------------------------------------------------------------------------- the schema
def test_the_schema_declares_binary_uploads_and_problem_details_for_every_error(server):
    url, _, _ = server
    spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
    upload = spec["components"]["schemas"]["PredictUpload"]
    assert upload["properties"]["file"] == {
        **upload["properties"]["file"],
        "type": "string",
        "format": "binary",
    }
    assert upload["required"] == ["file"] and upload["additionalProperties"] is False
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/octet-stream", "audio/*", "video/*"}
    declared = {
        (path, method): {int(s) for s in operation["responses"]}
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
    assert declared == {
        ("/health", "get"): {200, 400, 405, 413, 500, 503},
        ("/v1/model", "get"): {200, 400, 405, 413, 500, 503},
        ("/v1/predict", "post"): {200, 400, 403, 405, 408, 413, 415, 422, 500, 503},
        ("/v1/stream/tickets", "post"): {200, 400, 403, 405, 413, 500, 503},
    }
    for (path, method), statuses in declared.items():
        responses = spec["paths"][path][method]["responses"]
        for status in statuses - {200}:
            content = responses[str(status)]["content"]
            model = "ValidationProblem" if status == 422 else "Problem"
            assert content == {
                "application/problem+json": {"schema": {"$ref": f"#/components/schemas/{model}"}}
            }
        assert responses["405"]["headers"]["Allow"]["required"] is True
        assert responses["503"]["headers"]["Retry-After"]["required"] is True
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "instance"} <= set(problem["properties"])
    assert spec["components"]["schemas"]["ValidationProblem"]["required"][-1] == "errors"


def test_real_answers_validate_against_the_declared_schema_and_every_key_is_declared(
    server, tiny_served_model
):
    import schemathesis

    url, app, cfg = server
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    path = clip(tiny_served_model)
    for params in ({}, {"timeline": "true"}):
        answer = httpx.post(
            f"{url}/v1/predict", files={"file": (path.name, path.read_bytes())}, params=params, timeout=60
        )
        assert answer.status_code == 200, answer.text
        answer.request.read()  # the validator reads the request's (multipart) body too
        schema["/v1/predict"]["POST"].validate_response(answer)
        typed = Prediction.model_validate(answer.json())  # the README's typed client
        assert typed.file == path.name and typed.emotion == max(
            typed.probabilities, key=typed.probabilities.get
        )
        assert (typed.timeline is not None) == bool(params)
        assert ("timeline" in answer.json()) == bool(params)  # optional fields that are None are left out
    for route, model in (("/v1/model", ModelInfo), ("/health", Health)):
        answer = httpx.get(f"{url}{route}", timeout=30)
        schema[route]["GET"].validate_response(answer)
        assert model.model_validate(answer.json()).model_dump(mode="json") == answer.json()
    # what the service itself produces, before the models: no key is dropped for want of a field
    service = load_service(cfg)

    async def raw() -> dict:
        await service.start()
        try:
            result, _ = await service.analyse_upload(path.read_bytes(), path.name, timeline=True)
            return result
        finally:
            await service.stop()

    result = asyncio.run(raw())
    assert set(result) <= set(Prediction.model_fields)
    assert set(result["timeline"][0]) <= set(TimelineSegment.model_fields)
    assert set(service.info) <= set(ModelInfo.model_fields)
    assert set(service.batcher.stats.as_dict()) <= set(BatchingCounts.model_fields)


# --------------------------------------------------------------------------- errors
def assert_problem(reply: httpx.Response, status: int, path: str, spec: dict, method: str) -> dict:
    """The reply is problem details of `status` for `path`, a status its operation declares."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    (ValidationProblem if status == 422 else Problem).model_validate(body)
    assert body["status"] == status and body["instance"] == path and body["type"] == "about:blank"
    assert body["detail"] and body["title"]
    assert str(status) in spec["paths"][path][method]["responses"]
    return body


def test_every_error_is_problem_details_declared_on_its_endpoint(server, tiny_served_model):
    url, _, _ = server
    spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
    wav = clip(tiny_served_model).read_bytes()
    predict = f"{url}/v1/predict"

    assert "<html" in httpx.get(f"{url}/", timeout=60).text.lower()  # the page is mounted at /
    # methods a path does not take: 405 with Allow, where the page's mount would otherwise say 404
    for method, route, allow in (
        ("DELETE", "/v1/predict", "POST"),
        ("PUT", "/health", "GET"),
        ("TRACE", "/v1/model", "GET"),
    ):
        reply = httpx.request(method, f"{url}{route}", timeout=30)
        method_of_route = "post" if route == "/v1/predict" else "get"
        body = assert_problem(reply, 405, route, spec, method_of_route)
        assert reply.headers["allow"] == allow and method in body["detail"]
    # a path under /v1 that is not the API's: 404 as problem details, not the page's own 404
    reply = httpx.get(f"{url}/v1/nothing", timeout=30)
    assert reply.status_code == 404 and reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["instance"] == "/v1/nothing" and "/openapi.json" in reply.json()["detail"]
    # a body the API does not take
    reply = httpx.post(predict, content=b"text", headers={"Content-Type": "text/plain"}, timeout=30)
    assert "text/plain" in assert_problem(reply, 415, "/v1/predict", spec, "post")["detail"]
    reply = httpx.post(predict, data={"file": "clip.wav"}, timeout=30)  # a urlencoded form holds no file
    assert (
        "application/x-www-form-urlencoded"
        in assert_problem(reply, 415, "/v1/predict", spec, "post")["detail"]
    )
    # forms that do not match PredictUpload: each field named in `errors`
    reply = httpx.post(predict, files={"clip": ("a.wav", wav)}, timeout=30)
    errors = assert_problem(reply, 422, "/v1/predict", spec, "post")["errors"]
    assert [(e["location"], e["type"]) for e in errors] == [(["body", "clip"], "extra_forbidden")]
    reply = httpx.post(predict, files=[("file", ("a.wav", wav)), ("file", ("b.wav", wav))], timeout=30)
    errors = assert_problem(reply, 422, "/v1/predict", spec, "post")["errors"]
    assert errors[0]["location"] == ["body", "file"] and "2 times" in errors[0]["detail"]
    reply = httpx.post(predict, timeout=30)
    body = assert_problem(reply, 422, "/v1/predict", spec, "post")
    assert body["errors"][0]["location"] == ["body"] and "no file" in body["detail"]
    reply = httpx.post(predict, params={"timeline": "maybe"}, files={"file": ("a.wav", wav)}, timeout=30)
    errors = assert_problem(reply, 422, "/v1/predict", spec, "post")["errors"]
    assert [(e["location"], e["type"]) for e in errors] == [(["query", "timeline"], "bool_parsing")]
    # a recording the service cannot score: 422 with no field to blame
    reply = httpx.post(predict, files={"file": ("notes.wav", b"not audio " * 50)}, timeout=30)
    body = assert_problem(reply, 422, "/v1/predict", spec, "post")
    assert body["errors"] == [] and "notes.wav" in body["detail"]
    # the guards: a malformed multipart body, a Host of another name, a body over the limit
    reply = httpx.post(
        predict,
        content=b"--x\r\nbroken\r\n\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        timeout=30,
    )
    assert "malformed" in assert_problem(reply, 400, "/v1/predict", spec, "post")["detail"]
    reply = httpx.get(f"{url}/health", headers={"Host": "evil.example"}, timeout=30)
    assert "allowed_hosts" in assert_problem(reply, 400, "/health", spec, "get")["detail"]
    reply = httpx.post(predict, content=b"RIFF" + bytes(2_100_000), timeout=30)
    assert "2 MB" in assert_problem(reply, 413, "/v1/predict", spec, "post")["detail"]


def test_the_file_field_is_binary_with_or_without_a_file_name(server, tiny_served_model):
    url, _, _ = server
    path = clip(tiny_served_model)
    named = httpx.post(f"{url}/v1/predict", files={"file": (path.name, path.read_bytes())}, timeout=60).json()
    # `Content-Disposition: form-data; name="file"` without a file name: the same recording
    unnamed = httpx.post(f"{url}/v1/predict", files={"file": (None, path.read_bytes())}, timeout=60)
    assert unnamed.status_code == 200, unnamed.text
    assert unnamed.json()["file"] == "upload"
    assert unnamed.json()["probabilities"] == pytest.approx(named["probabilities"], abs=1e-6)
    # a path in the field is only bytes that are not audio: the server never reads the file it names
    reply = httpx.post(f"{url}/v1/predict", files={"file": (None, str(path).encode())}, timeout=60)
    assert reply.status_code == 422 and "is not audio this server can decode" in reply.json()["detail"]


# --------------------------------------------------------------------------- the bounded queue
def test_a_full_queue_answers_503_with_retry_after_at_once(tiny_served_model, tmp_path):
    """With room for one prediction, a request whose body is still arriving holds it: a second
    is refused at once with 503 and Retry-After, and the first is answered when its body is in."""
    with served(
        tiny_served_model,
        tmp_path / "run",
        "web=false",
        "limits.max_pending_requests=1",
        "limits.retry_after_s=7",
        "log_level=warning",
    ) as (url, _, _):
        port = int(url.rsplit(":", 1)[1])
        wav = clip(tiny_served_model).read_bytes()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as first:
            first.sendall(
                f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: audio/wav\r\n"
                f"Content-Length: {len(wav)}\r\n\r\n".encode()
                + wav[:100]
            )
            deadline = time.monotonic() + 60
            while httpx.get(f"{url}/health", timeout=30).json()["queue"]["pending"] != 1:
                assert time.monotonic() < deadline, "the first request never reached the queue"
                time.sleep(0.05)
            refused = httpx.post(
                f"{url}/v1/predict", content=wav, headers={"Content-Type": "audio/wav"}, timeout=30
            )
            assert refused.status_code == 503 and refused.headers["retry-after"] == "7"
            assert refused.headers["content-type"] == "application/problem+json"
            assert "limits.max_pending_requests" in refused.json()["detail"]
            first.sendall(wav[100:])
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                answer += first.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        Prediction.model_validate(json.loads(answer.split(b"\r\n\r\n", 1)[1]))
        queue = httpx.get(f"{url}/health", timeout=30).json()["queue"]
        assert queue == {"pending": 0, "max_pending": 1, "refused": 1}
        with pytest.raises(ValueError, match="max_pending_requests=0"):
            from ser_lightning.serving.pending import PendingRequests

            PendingRequests(max_pending=0)
