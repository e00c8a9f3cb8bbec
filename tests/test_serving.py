"""The HTTP service over a tiny model trained once: its answers equal predict's, bad requests get
clear errors and leave no file behind, concurrent requests are batched, and timelines of a long
recording made of known clips find those clips in order.

The model is trained for a few batches (barely better than chance): these tests check that the
service and predict agree on the same files, not the model's accuracy.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from ser_lightning.predict import predict
from ser_lightning.serving.app import api_key_for
from ser_lightning.serving.batching import BatchingSettings, DynamicBatcher
from ser_lightning.serving.server import build_app
from ser_lightning.utils.errors import InvalidSetting

from .helpers.configs import compose_train
from .helpers.serving import serve_config, served
from .helpers.video import write_video

API_KEY = "a-test-key-of-32-characters-long"
# one clip of each of six emotions, in this order, for the long recording of the timeline tests
TIMELINE_EMOTIONS = ("01", "03", "04", "05", "06", "08")
GAP_S = 1.0


@pytest.fixture(scope="module")
def trained(tiny_served_model):
    return tiny_served_model


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(trained, uploads, tmp_path_factory):
    """The served app (page included), with a 2 MB body limit and uploads in a folder of its own."""
    cfg = serve_config(
        trained,
        tmp_path_factory.mktemp("serve_run"),
        "max_upload_mb=2",
        f"upload_dir={uploads}",
        "timeline.smooth_segments=1",
        "batching.max_wait_ms=200",
    )
    with TestClient(build_app(cfg, environ={}), base_url="http://localhost") as test_client:
        yield test_client


def run_predict(trained, run_dir: Path, inputs: list[Path], *overrides: str) -> list[dict]:
    """`python -m ser_lightning.predict ... output=json` in this process: its JSON lines."""
    cfg = compose_train(
        [f"ckpt_path={trained.ckpt}", "inputs=[]", "device=cpu", "output=json", *overrides],
        run_dir,
        config_name="predict",
    )
    cfg.inputs = [str(p) for p in inputs]
    stream = io.StringIO()
    predict(cfg, stream=stream)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def clips(trained, count: int = 3) -> list[Path]:
    return sorted((trained.root / "Actor_11").glob("*.wav"))[:count]


def post(client, path: Path, **params):
    return client.post("/v1/predict", params=params, files={"file": (path.name, path.read_bytes())})


def long_recording(trained, path: Path) -> tuple[Path, list[tuple[float, float]]]:
    """Six clips of six emotions (Actor 11, in TIMELINE_EMOTIONS order) with a second of silence
    around each: the file and where each clip lies in it (seconds)."""
    parts, spans, at = [np.zeros(int(GAP_S * 16000), np.float32)], [], GAP_S
    for emotion in TIMELINE_EMOTIONS:
        wave, rate = sf.read(trained.root / f"Actor_11/03-01-{emotion}-01-01-01-11.wav", dtype="float32")
        assert rate == 16000
        parts += [wave, np.zeros(int(GAP_S * 16000), np.float32)]
        spans.append((at, at + len(wave) / rate))
        at += len(wave) / rate + GAP_S
    sf.write(path, np.concatenate(parts), 16000, subtype="FLOAT")
    return path, spans


# --------------------------------------------------------------------------- answers
def test_the_api_gives_predicts_probabilities_for_the_same_files(client, trained, tmp_path):
    short = clips(trained)
    joined = np.concatenate([sf.read(p, dtype="float32")[0] for p in short])
    long = tmp_path / "three_clips.flac"
    sf.write(long, joined, 16000)  # longer than the 1.5 s window: several windows, averaged
    mp4 = write_video(tmp_path / "clip.mp4", sf.read(short[0], dtype="float32")[0])
    files = [*short, long, mp4]
    expected = run_predict(trained, tmp_path / "predict", files)
    for path, want in zip(files, expected, strict=True):
        response = post(client, path)
        assert response.status_code == 200, response.text
        got = response.json()
        assert got["file"] == path.name and got["emotion"] == want["predicted"]
        assert got["windows"] == want["windows"] and got["duration_s"] == pytest.approx(want["duration_s"])
        assert list(got["probabilities"]) == list(want["probabilities"])
        np.testing.assert_allclose(
            list(got["probabilities"].values()), list(want["probabilities"].values()), rtol=0, atol=1e-6
        )
        assert got["confidence"] == pytest.approx(max(got["probabilities"].values()))
    assert expected[3]["windows"] > 1
    # the raw body, without a name, gives the same answer as the multipart upload
    raw = client.post("/v1/predict", content=long.read_bytes(), headers={"Content-Type": "audio/flac"})
    assert raw.status_code == 200
    np.testing.assert_allclose(
        list(raw.json()["probabilities"].values()), list(expected[3]["probabilities"].values()), atol=1e-6
    )


def test_model_health_and_docs_describe_the_served_model(client, trained):
    info = client.get("/v1/model").json()
    summary = json.loads((trained.run_dir / "summary.json").read_text())
    assert info["labels"] == summary["labels"]
    assert info["sample_rate"] == 16000 and info["window_s"] == 1.5
    assert info["features"]["name"] == "LogMel" and info["network"] == "ACNT"
    assert info["parameters"] > 1000 and info["corpus"] == "ravdess"
    assert info["protocol"]["split"] == "actor" and sum(info["protocol"]["sizes"].values()) == 720
    assert info["test_metrics"] == {
        "ua": summary["metrics"]["test/ua"],
        "wa": summary["metrics"]["test/acc"],
        "f1": summary["metrics"]["test/f1"],
    }
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["checkpoint"] == trained.ckpt.name
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/model", "/health"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()


# --------------------------------------------------------------------------- bad requests
def wav_with_format_tag(path: Path, tag: int) -> Path:
    """A WAV whose header names an audio format (codec) no decoder knows."""
    fmt = struct.pack("<HHIIHH", tag, 1, 16000, 32000, 2, 16)
    data = np.zeros(8000, "<i2").tobytes()
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_bad_requests_get_a_status_and_a_message_naming_the_problem(client, trained, uploads, tmp_path):
    clip = clips(trained, 1)[0]
    sf.write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    (tmp_path / "notes.wav").write_bytes(b"these are my notes, not a recording\n" * 20)
    (tmp_path / "truncated.wav").write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    (tmp_path / "empty.wav").write_bytes(b"")
    wav_with_format_tag(tmp_path / "codec.wav", 0x7777)
    expected = {
        "zero.wav": "holds no audio samples",
        "silence.wav": "is silent",
        "notes.wav": "is not audio this server can decode",
        "truncated.wav": "truncated",
        "empty.wav": "is empty (0 bytes)",
        "codec.wav": "codec",
    }
    for name, words in expected.items():
        response = post(client, tmp_path / name)
        assert response.status_code == 422, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert name in response.json()["detail"] and words in response.json()["detail"], response.text
    # no file at all: an empty body, or a form without the field (both named in the problem's errors)
    for kwargs, where in (({}, ["body"]), ({"files": {"clip": ("x.wav", b"x")}}, ["body", "clip"])):
        response = client.post("/v1/predict", **kwargs)
        assert response.status_code == 422, response.text
        assert [e["location"] for e in response.json()["errors"]] == [where]
    assert "no file" in client.post("/v1/predict").json()["detail"]
    # a path where the file should be: a urlencoded form carries no file (415); in a multipart
    # field it is only bytes that are not audio (422): the server never reads the file named
    response = client.post("/v1/predict", data={"file": str(clip)})
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]
    response = client.post("/v1/predict", files={"file": (None, str(clip).encode())})
    assert response.status_code == 422 and "is not audio" in response.json()["detail"]
    # over the 2 MB limit: declared (multipart) or only found while reading (a chunked body)
    big = b"RIFF" + bytes(2_100_000)
    response = client.post("/v1/predict", files={"file": ("big.wav", big)})
    assert response.status_code == 413 and "2 MB" in response.json()["detail"]
    assert response.json()["status"] == 413 and response.json()["instance"] == "/v1/predict"
    response = client.post("/v1/predict", content=iter([big[:1_000_000], big[1_000_000:]]))
    assert response.status_code == 413
    # nothing of any of these requests is left in the upload folder (the page's cache aside)
    assert [p.name for p in uploads.iterdir() if not p.name.startswith("ser-page-")] == []
    assert client.get("/health").json()["status"] == "ok"


def test_an_api_key_is_required_beyond_loopback_and_checked(trained, tmp_path):
    with pytest.raises(ValueError, match="SER_API_KEY"):
        api_key_for("0.0.0.0", {})
    with pytest.raises(ValueError, match="at least 16"):
        api_key_for("0.0.0.0", {"SER_API_KEY": "short"})
    assert api_key_for("127.0.0.1", {}) is None and api_key_for("::1", {}) is None
    cfg = serve_config(trained, tmp_path, "host=0.0.0.0", "web=false")
    with TestClient(build_app(cfg, environ={"SER_API_KEY": API_KEY}), base_url="http://localhost") as keyed:
        assert keyed.get("/v1/model").status_code == 401
        assert keyed.get("/v1/model", headers={"X-API-Key": API_KEY[:-1] + "x"}).status_code == 401
        assert keyed.get("/v1/model", headers={"X-API-Key": API_KEY}).status_code == 200
        assert keyed.get("/v1/model", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
        clip = clips(trained, 1)[0]
        assert post(keyed, clip).status_code == 401
        assert keyed.get("/health").status_code == 200


# --------------------------------------------------------------------------- batching
def test_concurrent_requests_share_model_calls_and_get_their_own_answers(client, trained):
    """Every request of a burst gets its own answer; and batching happens: requests that arrive
    together share model calls. Whether they arrive together is up to thread scheduling on a
    loaded machine, so up to three bursts are sent until one shares a call."""
    files = clips(trained, 6)
    alone = [post(client, p).json()["probabilities"] for p in files]

    def burst() -> tuple[dict[int, dict], dict, dict]:
        before = client.get("/health").json()["batching"]
        answers: dict[int, dict] = {}
        start = threading.Barrier(len(files))

        def request(i: int) -> None:
            start.wait()
            answers[i] = post(client, files[i]).json()["probabilities"]

        threads = [threading.Thread(target=request, args=(i,)) for i in range(len(files))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return answers, before, client.get("/health").json()["batching"]

    for _ in range(3):
        answers, before, after = burst()
        assert after["requests"] - before["requests"] == len(files)
        for i in range(len(files)):
            np.testing.assert_allclose(list(answers[i].values()), list(alone[i].values()), atol=1e-6)
        if after["batches"] - before["batches"] < len(files):
            break  # some requests shared a model call
    else:
        pytest.fail("in three bursts of 6 concurrent requests, no two shared a model call")


def test_the_batcher_gathers_queued_requests_up_to_its_limit_and_keeps_their_order():
    calls: list[int] = []

    def score(windows: np.ndarray) -> np.ndarray:
        calls.append(len(windows))
        return windows[:, :1] * 10

    async def run(settings: BatchingSettings) -> list[np.ndarray]:
        batcher = DynamicBatcher(score, settings)
        await batcher.start()
        try:
            requests = [np.full((n, 4), float(i)) for i, n in enumerate([1, 2, 3, 1, 1])]
            return await asyncio.gather(*(batcher.scores(r) for r in requests))
        finally:
            await batcher.stop()

    results = asyncio.run(run(BatchingSettings(enabled=True, max_batch_windows=4, max_wait_ms=50)))
    assert calls == [3, 4, 1]  # 1+2 (the 3 would overflow 4 windows), then 3+1, then the last
    assert [r[:, 0].tolist() for r in results] == [[0.0], [10.0, 10.0], [20.0] * 3, [30.0], [40.0]]
    calls.clear()
    asyncio.run(run(BatchingSettings(enabled=False)))
    assert calls == [1, 2, 3, 1, 1]


def test_the_batcher_waits_for_a_request_on_its_way_and_not_for_nobody():
    calls: list[int] = []

    def score(windows: np.ndarray) -> np.ndarray:
        calls.append(len(windows))
        return windows[:, :1]

    async def run() -> None:
        batcher = DynamicBatcher(score, BatchingSettings(max_batch_windows=8, max_wait_ms=60_000))
        await batcher.start()
        try:
            # nobody else is on the way: a lone request is scored at once, not after the wait
            await asyncio.wait_for(batcher.scores(np.ones((1, 4))), 30)
            # a second request is being decoded: the first waits for it and they share one call
            batcher.expect()
            first = asyncio.create_task(batcher.scores(np.ones((1, 4))))
            await asyncio.sleep(0.2)
            batcher.arrived()
            second = await asyncio.wait_for(batcher.scores(np.full((2, 4), 2.0)), 30)
            assert (await first).tolist() == [[1.0]] and second.tolist() == [[2.0], [2.0]]
        finally:
            await batcher.stop()

    asyncio.run(run())
    assert calls == [1, 3]


def test_model_threads_score_batches_at_once_and_each_request_gets_its_own_rows():
    def run(model_threads: int, timeout: float) -> list:
        # a 2-party barrier inside the model call: passed only when two batches are in it at once
        barrier = threading.Barrier(2, timeout=timeout)

        def score(windows: np.ndarray) -> np.ndarray:
            barrier.wait()
            return windows[:, :1] * 10

        async def go() -> list:
            settings = BatchingSettings(max_batch_windows=1, max_wait_ms=0, model_threads=model_threads)
            batcher = DynamicBatcher(score, settings)
            await batcher.start()
            try:
                requests = [np.full((1, 4), float(i)) for i in range(4)]
                return await asyncio.gather(*(batcher.scores(r) for r in requests), return_exceptions=True)
            finally:
                await batcher.stop()

        return asyncio.run(go())

    results = run(model_threads=2, timeout=60)
    assert [r.tolist() for r in results] == [[[0.0]], [[10.0]], [[20.0]], [[30.0]]]
    # one model thread never has two batches in the model at once: the barrier breaks
    assert all(isinstance(r, threading.BrokenBarrierError) for r in run(model_threads=1, timeout=0.5))


def test_model_threads_share_the_cores_and_must_be_at_least_one():
    from ser_lightning.serving.server import per_call_threads

    assert per_call_threads(1, cores=16) is None  # one caller: the runtime's own default
    assert [per_call_threads(n, cores=2) for n in (2, 3)] == [1, 1]
    assert per_call_threads(2, cores=16) == 8
    with pytest.raises(InvalidSetting, match="batching.model_threads=0"):
        BatchingSettings(model_threads=0)


# --------------------------------------------------------------------------- timelines
def test_the_timeline_of_known_clips_finds_each_clip_in_order(client, trained, tmp_path):
    recording, spans = long_recording(trained, tmp_path / "talk.wav")
    response = post(client, recording, timeline="true")
    assert response.status_code == 200, response.text
    segments = response.json()["timeline"]
    assert len(segments) == len(spans)
    for segment, (start, end) in zip(segments, spans, strict=True):
        # each speech segment lies on its clip (the detector trims or pads its edges a little)
        assert start - 0.3 <= segment["start_s"] < segment["end_s"] <= end + 0.3
        assert segment["end_s"] - segment["start_s"] > 0.5 * (end - start)
        assert segment["emotion"] == max(segment["probabilities"], key=segment["probabilities"].get)
    # unsmoothed (this app: timeline.smooth_segments=1), a segment gets what predict gives for a
    # file holding just that stretch of the recording
    wave, rate = sf.read(recording, dtype="float32")
    cut = []
    for i, segment in enumerate(segments):
        cut.append(tmp_path / f"segment{i}.wav")
        # 3 decimals in the answer: the segment's own samples are found by rounding
        a, b = int(round(segment["start_s"] * rate)), int(round(segment["end_s"] * rate))
        sf.write(cut[-1], wave[a:b], rate, subtype="FLOAT")
    for segment, want in zip(segments, run_predict(trained, tmp_path / "cut", cut), strict=True):
        np.testing.assert_allclose(
            list(segment["probabilities"].values()), list(want["probabilities"].values()), atol=1e-6
        )


def test_predict_timeline_mode_prints_smoothed_segments_and_plots_them(client, trained, tmp_path):
    from ser_lightning.inference.timeline import smooth

    recording, spans = long_recording(trained, tmp_path / "talk.wav")
    run_dir = tmp_path / "predict"
    (record,) = run_predict(trained, run_dir, [recording], "timeline=true")
    api = post(client, recording, timeline="true").json()["timeline"]  # unsmoothed: smooth_segments=1
    assert [(s["start_s"], s["end_s"]) for s in record["timeline"]] == [
        (s["start_s"], s["end_s"]) for s in api
    ]
    raw = np.array([list(s["probabilities"].values()) for s in api])
    lengths = np.array([s["end_s"] - s["start_s"] for s in api])
    smoothed = np.array([list(s["probabilities"].values()) for s in record["timeline"]])
    # predict smooths over 3 neighbouring segments (conf/predict.yaml), weighted by their lengths
    np.testing.assert_allclose(smoothed, smooth(raw, lengths, 3), atol=1e-4)
    middle = (lengths[0] * raw[0] + lengths[1] * raw[1] + lengths[2] * raw[2]) / lengths[:3].sum()
    np.testing.assert_allclose(smoothed[1], middle, atol=1e-4)
    assert np.allclose(smoothed.sum(axis=1), 1.0, atol=1e-5)
    plots = list((run_dir / "timelines").glob("*.png"))
    assert [p.name for p in plots] == ["000_talk.png"] and plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_make_serve_finds_the_best_checkpoint_of_the_latest_run(trained, tmp_path):
    from ser_lightning.serving.latest import latest_checkpoint, main

    runs = tmp_path / "outputs/train/runs"
    assert latest_checkpoint(runs) is None and main([str(runs)]) == 1
    older = runs / "2026-01-01_10-00-00"
    (older / "checkpoints").mkdir(parents=True)
    (older / "checkpoints/best-epoch003.ckpt").write_bytes(b"x")
    newer = runs / "2026-01-02_09-00-00"  # its summary names the fixture's checkpoint
    newer.mkdir()
    (newer / "summary.json").write_text(json.dumps({"best_checkpoint": str(trained.ckpt)}))
    assert latest_checkpoint(runs) == trained.ckpt
    (runs / "2026-01-03_08-00-00/checkpoints").mkdir(parents=True)  # latest, stopped before any checkpoint
    assert latest_checkpoint(runs) == trained.ckpt
    (newer / "summary.json").unlink()
    assert latest_checkpoint(runs) == older / "checkpoints/best-epoch003.ckpt"


# --------------------------------------------------------------------------- the web page in a browser
# The screenshot stays in the test's temporary folder: the page's picture in the docs
# (docs/serve_page.png) shows a model that has learned, made by experiments/screenshots/serve_page.py.
# Set to 1 to skip the browser test on a machine without Chromium (never in CI: there it must run).
SKIP_BROWSER_ENV = "SER_SKIP_BROWSER_TEST"


def browser_paths() -> tuple[str, str]:
    """The OS's Chromium and its driver (Debian: apt-get install chromium chromium-driver)."""
    import shutil

    browser = os.environ.get("SER_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = os.environ.get("SER_CHROMEDRIVER") or shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    missing = "Chromium" if not browser else "chromedriver"
    message = (
        f"{missing} is not installed: the web page test drives the OS's headless Chromium "
        "(Debian: apt-get install chromium chromium-driver; .ci/run installs them). "
        f"To skip this test on this machine only, set {SKIP_BROWSER_ENV}=1"
    )
    if os.environ.get(SKIP_BROWSER_ENV) == "1":
        pytest.skip(message)
    pytest.fail(message)


@pytest.fixture
def live_server(trained, tmp_path):
    """The app served by the project's uvicorn server on a free loopback port, in a thread."""
    with served(trained, tmp_path / "run", f"upload_dir={tmp_path}", "log_level=warning") as (url, _, _):
        yield url


def test_the_web_page_shows_the_apis_emotion_and_a_timeline_in_chromium(
    live_server, trained, tmp_path, monkeypatch
):
    import httpx
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = browser_paths()
    recording, spans = long_recording(trained, tmp_path / "talk.wav")
    screenshot = tmp_path / "serve_page.png"
    with open(recording, "rb") as handle:
        api = httpx.post(
            f"{live_server}/v1/predict", files={"file": handle}, params={"timeline": "true"}, timeout=60
        )
    assert api.status_code == 200, api.text
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1500"):
        options.add_argument(argument)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium must never fetch a browser or driver of its own
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"{live_server}/")
        wait = WebDriverWait(driver, 60)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#recording input[type=file]"))
        upload.send_keys(str(recording))

        def shown_emotion(d):
            found = d.find_elements(By.CSS_SELECTOR, "#emotion [data-testid='label-output-value']")
            return found[0].text.strip() if found and found[0].text.strip() else False

        assert wait.until(shown_emotion) == api.json()["emotion"]
        # one bar per emotion, and a row per speech segment of the timeline (the recording is long)
        bars = driver.find_elements(By.CSS_SELECTOR, "#emotion meter")
        assert len(bars) == len(api.json()["probabilities"])
        rows = wait.until(
            lambda d: (
                d.find_elements(By.CSS_SELECTOR, "#segments table tbody tr")
                if len(d.find_elements(By.CSS_SELECTOR, "#segments table tbody tr")) == len(spans)
                else False
            )
        )
        assert [r.find_elements(By.CSS_SELECTOR, "td")[2].text.strip() for r in rows] == [
            s["emotion"] for s in api.json()["timeline"]
        ]
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline-plot img, #timeline-plot svg"))
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- start-up
def test_predict_and_serve_score_without_importing_lightning(trained):
    """The inference model gives SERModule's probabilities, and predict and serve never import
    Lightning, torchmetrics or transformers (seconds of start-up that scoring does not use)."""
    import subprocess
    import sys

    from ser_lightning.inference.predictor import Predictor
    from ser_lightning.model import SERModel
    from ser_lightning.module import SERModule

    waves = np.zeros((4, 24000), np.float32)  # the model's 1.5 s window, zero-padded as predict pads
    for row, path in zip(waves, clips(trained, 4), strict=True):
        wave = sf.read(path, dtype="float32")[0][:24000]
        row[: len(wave)] = wave
    plain = Predictor(SERModel.load_from_checkpoint(trained.ckpt), device="cpu")
    lightning = Predictor(SERModule.load_from_checkpoint(trained.ckpt).model, device="cpu")
    np.testing.assert_array_equal(
        plain.waveform_probabilities(waves), lightning.waveform_probabilities(waves)
    )
    code = f"""
import sys
import ser_lightning.predict, ser_lightning.serving.server
from ser_lightning.model import SERModel
from ser_lightning.inference.predictor import Predictor
predictor = Predictor(SERModel.load_from_checkpoint({str(trained.ckpt)!r}), device="cpu")
(result,) = predictor.predict_files([{str(clips(trained, 1)[0])!r}])
print(result.predicted)
print(sorted(m for m in ("pytorch_lightning", "lightning", "lightning_fabric", "torchmetrics", "transformers") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "[]", done.stdout
