"""The live-microphone page in headless Chromium: a WAV of demo clips separated by silence plays as
the fake microphone (--use-file-for-fake-audio-capture), the page streams it to WS /v1/stream in
real time, and a segment per clip appears on the page, in order, each with the emotion the file
predictor gives that clip. The clips are those predict scores with the widest margins (the tiny
model is barely trained, and the browser resamples the audio on its way). On a server with an API
key too: the browser logs in to the page (user `ser`, the key), and the page opens its stream with
a single-use ticket it asks for with that login (serving/stream_tickets.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import soundfile as sf

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides
from .helpers.models import TINY_TRAINING
from .helpers.serving import served
from .test_serving import browser_paths, run_predict

GAP_S = 1.2
API_KEY = "a-browser-key-of-32-characters-x"
MARGIN = 0.1  # the least gap between a chosen clip's top two probabilities


@pytest.fixture(scope="module")
def learned_model(small_demo_root, tmp_path_factory):
    """The serving tests' small ACNT trained longer (6 epochs of 20 batches), so that it has learned
    some emotions with a clear margin: `.ckpt` and `.root`, as `train_tiny_model` gives."""
    from ser_lightning.train import train

    run_dir = tmp_path_factory.mktemp("live_model")
    longer = ["trainer.max_epochs=6", "trainer.limit_train_batches=20"]
    cfg = compose_train(
        small_demo_overrides(small_demo_root) + TINY_TRAINING + longer,
        run_dir,
        tmp_path_factory.mktemp("cache"),
    )
    _, objects = train(cfg)
    return SimpleNamespace(
        ckpt=Path(objects["summary"]["best_checkpoint"]), run_dir=run_dir, root=small_demo_root
    )


def chosen_clips(trained, run_dir) -> list[tuple[str, str, float]]:
    """The clips of Actor 11 and 12 that predict scores with the widest margin between its top two
    emotions, one per emotion it predicts, at most three: (path, emotion, margin). The tiny model
    is barely trained, so these are the clips whose emotion a resampled copy keeps."""
    candidates = sorted((trained.root / "Actor_11").glob("*.wav")) + sorted(
        (trained.root / "Actor_12").glob("*.wav")
    )
    records = run_predict(trained, run_dir, candidates)
    best: dict[str, tuple[str, str, float]] = {}
    for path, record in zip(candidates, records, strict=True):
        top, second = sorted(record["probabilities"].values())[::-1][:2]
        emotion = record["predicted"]
        if emotion not in best or top - second > best[emotion][2]:
            best[emotion] = (str(path), emotion, top - second)
    return sorted(best.values(), key=lambda c: -c[2])[:3]


def log_in(driver, url: str) -> None:
    """Log the browser in to the page as a person does on its login form (Gradio's: POST /login),
    and give it the session cookie for plain http."""
    login = httpx.post(f"{url}/login", data={"username": "ser", "password": API_KEY}, timeout=30)
    assert login.status_code == 200, login.text
    driver.get(f"{url}/health")  # a page of the server's origin, to set its cookie on
    for name, value in login.cookies.items():
        if "unsecure" in name:  # the one Gradio sets for http (the other is Secure, for https)
            driver.add_cookie({"name": name, "value": value, "path": "/"})


@pytest.mark.slow
@pytest.mark.parametrize("keyed", [False, True], ids=["open", "api_key"])
def test_the_live_page_shows_each_spoken_clips_emotion_in_order_in_chromium(
    learned_model, tmp_path, monkeypatch, keyed
):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = browser_paths()
    clips = chosen_clips(learned_model, tmp_path / "predict")
    clips = [c for c in clips if c[2] >= MARGIN]
    assert len(clips) >= 2, f"fewer than 2 emotions with a clip of margin {MARGIN}: {clips}"
    silence = np.zeros(int(GAP_S * 16000), np.float32)
    parts = [silence]
    for path, *_ in clips:
        wave, rate = sf.read(path, dtype="float32")
        parts += [wave, silence]
    microphone = tmp_path / "microphone.wav"
    sf.write(microphone, np.concatenate(parts + [silence]), 16000, subtype="PCM_16")

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(argument)
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium must never fetch a browser or driver of its own
    environ = {"SER_API_KEY": API_KEY} if keyed else {}
    with served(
        learned_model, tmp_path / "run", f"upload_dir={tmp_path}", "log_level=warning", environ=environ
    ) as (url, app, _):
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            if keyed:
                log_in(driver, url)
            driver.get(f"{url}/live")
            wait = WebDriverWait(driver, 90)
            wait.until(lambda d: d.find_element(By.ID, "start")).click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#segments li.segment")) >= len(clips))
            driver.find_element(By.ID, "stop").click()
            wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("Stopped"))
            rows = driver.find_elements(By.CSS_SELECTOR, "#segments li.segment")
            shown = [(float(r.get_attribute("data-start")), r.get_attribute("data-emotion")) for r in rows]
        finally:
            driver.quit()
        tickets = app.state.stream_tickets
    assert (tickets.issued, tickets.redeemed) == (1, 1)  # the page's stream opened with its ticket
    assert [emotion for _, emotion in shown] == [emotion for _, emotion, _ in clips], clips
    starts = [start for start, _ in shown]
    assert starts == sorted(starts)
