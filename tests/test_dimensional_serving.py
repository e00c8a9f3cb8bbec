"""A task=dimensional checkpoint (arousal, valence and dominance, no emotion classes) served and
predicted: the API, the web page, the stream and timelines answer its dimensions without an emotion,
each equal to the model run directly on the same windows; settings of class probabilities are
refused by name.

The network is untrained (a real checkpoint of the tiny ACNT with the demo corpus's 1-5 scale):
these tests check that every path gives the model's own values, not what a model learns
(tests/test_dimensions_training.py measures that).
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.inference.media import read_media
from ser_lightning.inference.predictor import Predictor
from ser_lightning.inference.windows import clip_windows
from ser_lightning.model import SERModel
from ser_lightning.predict import predict
from ser_lightning.serving.server import build_app, load_service
from ser_lightning.utils.errors import InvalidSetting

from .helpers.configs import compose_train
from .helpers.models import TINY_NET, module_from_config
from .helpers.serving import fake_microphone_chrome, serve_config, served
from .test_calibration import save
from .test_streaming import recording, s16le, stream

DEMO_SCALE = {"low": 1.0, "high": 5.0}


def saved_model(task: str, path: Path, seed: int = 0) -> Path:
    """An untrained tiny ACNT of `task`, rated on the demo corpus's scale, saved as a checkpoint."""
    torch.manual_seed(seed)
    module = module_from_config([*TINY_NET, f"task={task}"], duration=1.0)
    module.set_dimension_scale(DEMO_SCALE)
    return save(module, path, None)


def direct_dimensions(model: SERModel, path: Path) -> dict[str, float]:
    """The file's dimensions computed here: predict's windows of the decoded file (half a window
    apart) through `SERModel.dimensions`, averaged."""
    wave = read_media(path, model.audio.sample_rate)
    windows = clip_windows(wave, model.audio, model.audio.duration / 2)
    with torch.inference_mode():
        values = model.dimensions({"waveform": torch.from_numpy(windows.take(np.arange(len(windows))))})
    return dict(zip(DIMENSIONS, values.double().mean(0).tolist(), strict=True))


@pytest.fixture(scope="module")
def dimensional(small_demo_root, tmp_path_factory):
    ckpt = saved_model("dimensional", tmp_path_factory.mktemp("dimensional") / "dimensional.ckpt")
    return SimpleNamespace(ckpt=ckpt, root=small_demo_root, model=SERModel.load_from_checkpoint(ckpt))


@pytest.fixture(scope="module")
def talk(small_demo_root, tmp_path_factory) -> Path:
    """Three demo clips with a second of silence around each (the streaming tests' recording)."""
    wave, _ = recording(small_demo_root)
    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    return path


def run_predict(trained, run_dir: Path, inputs: list[Path], *overrides: str) -> str:
    cfg = compose_train(
        [f"ckpt_path={trained.ckpt}", "inputs=[]", "device=cpu", *overrides], run_dir, config_name="predict"
    )
    cfg.inputs = [str(p) for p in inputs]
    out = io.StringIO()
    predict(cfg, stream=out)
    return out.getvalue()


def test_the_api_answers_a_dimensional_model_with_its_dimensions_and_no_emotion(dimensional, talk, tmp_path):
    clips = sorted((dimensional.root / "Actor_11").glob("*.wav"))[:2]
    with served(dimensional, tmp_path / "run", f"upload_dir={tmp_path}", "log_level=warning") as (url, _, _):
        info = httpx.get(f"{url}/v1/model", timeout=30).json()
        replies = []
        for path in [*clips, talk]:
            with open(path, "rb") as handle:
                replies.append(
                    httpx.post(f"{url}/v1/predict", files={"file": (path.name, handle)}, timeout=60)
                )
        with open(talk, "rb") as handle:
            timeline = httpx.post(
                f"{url}/v1/predict",
                files={"file": (talk.name, handle)},
                params={"timeline": "true"},
                timeout=60,
            )
        spec = httpx.get(f"{url}/openapi.json", timeout=30).json()
    assert info["task"] == "dimensional" and info["labels"] == [] and info["dimensions"] == list(DIMENSIONS)
    assert info["dimension_scale"] == DEMO_SCALE
    for path, reply in zip([*clips, talk], replies, strict=True):
        assert reply.status_code == 200, reply.text
        got = reply.json()
        assert set(got) == {"file", "duration_s", "windows", "dimensions", "dimension_scale"}
        assert got["dimension_scale"] == DEMO_SCALE
        want = direct_dimensions(dimensional.model, path)
        np.testing.assert_allclose([got["dimensions"][n] for n in DIMENSIONS], list(want.values()), atol=1e-5)
    assert replies[-1].json()["windows"] > 2  # the long recording: several windows, averaged
    # a timeline: each speech segment's own dimensions, no emotion; the segment's audio scored directly
    assert timeline.status_code == 200, timeline.text
    segments = timeline.json()["timeline"]
    assert len(segments) == 3 and all(set(s) == {"start_s", "end_s", "dimensions"} for s in segments)
    wave = read_media(talk, 16000)
    for i, segment in enumerate(segments):
        cut = tmp_path / f"segment{i}.wav"
        sf.write(
            cut,
            wave[round(segment["start_s"] * 16000) : round(segment["end_s"] * 16000)],
            16000,
            subtype="FLOAT",
        )
        want = direct_dimensions(dimensional.model, cut)
        np.testing.assert_allclose(
            [segment["dimensions"][n] for n in DIMENSIONS], list(want.values()), atol=1e-3
        )
    required = spec["components"]["schemas"]["Prediction"].get("required", [])
    assert "emotion" not in required and "probabilities" not in required


def test_the_page_shows_the_plane_and_no_emotion_bars(dimensional, talk, tmp_path):
    from ser_lightning.serving.web import build_page

    service = load_service(serve_config(dimensional, tmp_path / "run", f"upload_dir={tmp_path}"))
    page = build_page(service)
    analyse = next(f.fn for f in page.fns.values() if f.fn.__name__ == "analyse")
    bars = next(b for b in page.blocks.values() if getattr(b, "elem_id", None) == "emotion")
    plane_block = next(b for b in page.blocks.values() if getattr(b, "elem_id", None) == "valence-arousal")
    assert bars.visible is False and plane_block.visible is True

    async def scored():
        await service.start()
        try:
            api, _ = await service.analyse_upload(talk.read_bytes(), talk.name, timeline=True)
            return api, await analyse(str(talk), True)
        finally:
            await service.stop()

    api, (probabilities, summary, figure, table, plane) = asyncio.run(scored())
    assert probabilities is None and "**" not in summary  # no emotion, no bars
    dims = api["dimensions"]
    assert (
        f"arousal {dims['arousal']:.2f}  valence {dims['valence']:.2f}" in summary
        and "(scale 1-5)" in summary
    )
    point = plane.axes[0].lines[-1]  # the recording, drawn last
    assert (point.get_xdata()[0], point.get_ydata()[0]) == pytest.approx((dims["valence"], dims["arousal"]))
    assert table.splitlines()[0] == "| start (s) | end (s) | arousal | valence |"
    assert len(table.splitlines()) == 2 + len(api["timeline"])
    # the timeline plot: the waveform and arousal and valence over time (no probability panel)
    assert len(figure.axes) == 2
    rated = figure.axes[1]
    assert rated.get_ylim() == (1.0, 5.0) and [line.get_label() for line in rated.lines] == [
        "arousal",
        "valence",
    ]
    first = api["timeline"][0]
    assert list(rated.lines[0].get_ydata()[:2]) == pytest.approx([first["dimensions"]["arousal"]] * 2)


def test_stream_events_carry_dimensions_without_an_emotion(dimensional, small_demo_root, tmp_path):
    cfg = serve_config(dimensional, tmp_path / "run", "web=false")
    wave, spans = recording(small_demo_root)
    with TestClient(build_app(cfg, environ={}), base_url="http://localhost") as client:
        events = stream(client, s16le(wave))
    ready, segments = events[0], [e for e in events if e.get("type") == "segment"]
    assert ready["type"] == "ready" and ready["labels"] == []
    assert len(segments) == len(spans) and events[-1] == {"close": 1000}
    received = np.frombuffer(s16le(wave), "<i2").astype(np.float32) / 32768  # as the server got it
    for event in segments:
        assert "emotion" not in event and "probabilities" not in event
        cut = tmp_path / f"stream{event['index']}.wav"
        a, b = round(event["start_s"] * 16000), round(event["end_s"] * 16000)
        sf.write(cut, received[a:b], 16000, subtype="FLOAT")
        want = direct_dimensions(dimensional.model, cut)
        np.testing.assert_allclose(
            [event["dimensions"][n] for n in DIMENSIONS], list(want.values()), atol=1e-5
        )


def test_predict_a_dimensional_model_in_each_output_and_with_a_timeline(dimensional, talk, tmp_path):
    clips = sorted((dimensional.root / "Actor_11").glob("*.wav"))[:2]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    records = [
        json.loads(line)
        for line in run_predict(dimensional, tmp_path / "json", [*clips, broken], "output=json").splitlines()
    ]
    assert records[-1]["file"] == str(broken) and "error" in records[-1]
    for path, record in zip(clips, records, strict=False):
        assert "predicted" not in record and record["dimension_scale"] == DEMO_SCALE
        assert record["dimensions"] == pytest.approx(direct_dimensions(dimensional.model, path), abs=1e-5)
    table = pd.read_csv(io.StringIO(run_predict(dimensional, tmp_path / "csv", clips, "output=csv")))
    assert list(table.columns) == ["file", "window", "start_s", "end_s", *DIMENSIONS, "error"]
    for row, record in zip(table.itertuples(), records, strict=False):
        assert [getattr(row, n) for n in DIMENSIONS] == pytest.approx(
            [record["dimensions"][n] for n in DIMENSIONS], abs=1e-5
        )
    human = run_predict(dimensional, tmp_path / "human", clips[:1])
    assert "Predicted emotion" not in human and "(scale 1-5)" in human
    # timeline=true: each segment's dimensions, no emotion, and a plot of arousal and valence
    (timeline,) = [
        json.loads(line)
        for line in run_predict(
            dimensional, tmp_path / "timeline", [talk], "output=json", "timeline=true"
        ).splitlines()
    ]
    assert len(timeline["timeline"]) == 3 and all(
        "emotion" not in s and set(s["dimensions"]) == set(DIMENSIONS) for s in timeline["timeline"]
    )
    assert timeline["dimensions"] == pytest.approx(direct_dimensions(dimensional.model, talk), abs=1e-5)
    assert len(list((tmp_path / "timeline").glob("timelines/*.png"))) == 1


def test_class_settings_on_a_dimensional_model_are_refused_by_name(dimensional, tmp_path):
    with pytest.raises(
        InvalidSetting, match="min_confidence=0.5.*task=dimensional.*leave min_confidence at 0"
    ):
        Predictor(dimensional.model, device="cpu", min_confidence=0.5)
    with pytest.raises(
        InvalidSetting, match="calibration=none.*task=dimensional.*leave calibration at checkpoint"
    ):
        run_predict(dimensional, tmp_path / "none", [tmp_path / "any.wav"], "calibration=none")


@pytest.mark.slow
def test_the_live_page_shows_a_dimensional_models_arousal_and_valence_in_chromium(
    dimensional, tmp_path, monkeypatch
):
    """The live page in headless Chromium (the fake microphone plays three clips with silences):
    each segment shows the arousal and valence of its event, and no emotion."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from .test_serving import browser_paths

    browser, driver_path = browser_paths()
    wave, spans = recording(dimensional.root, gap_s=1.2)
    microphone = tmp_path / "microphone.wav"
    sf.write(microphone, np.concatenate([wave, np.zeros(19200, np.float32)]), 16000, subtype="PCM_16")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium must never fetch a browser or driver of its own
    with served(dimensional, tmp_path / "run", f"upload_dir={tmp_path}", "log_level=warning") as (url, _, _):
        driver = fake_microphone_chrome(browser, driver_path, microphone)
        try:
            driver.get(f"{url}/live")
            assert "none (this model gives arousal, valence and dominance)" in driver.page_source
            wait = WebDriverWait(driver, 90)
            wait.until(lambda d: d.find_element(By.ID, "start")).click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#segments li.segment")) >= len(spans))
            driver.find_element(By.ID, "stop").click()
            wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("Stopped"))
            rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#segments li.segment")]
        finally:
            driver.quit()
    assert len(rows) == len(spans)
    for row in rows:
        _, answer = row.split(" s: ", 1)
        arousal, valence = (float(part.split()[1]) for part in answer.split(", ")[:2])
        assert answer.startswith("arousal ") and "%" not in answer and "undefined" not in answer
        assert 1.0 <= arousal <= 5.0 and 1.0 <= valence <= 5.0
