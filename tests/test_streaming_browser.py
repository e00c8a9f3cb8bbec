"""The live-microphone page in headless Chromium: a WAV of demo clips separated by silence plays as
the fake microphone (--use-file-for-fake-audio-capture), the page streams it to WS /v1/stream in
real time, and a segment per clip appears on the page, in order, each with the emotion predict
gives that clip. The clips are those whose emotion holds with the widest margins on the stream's
path (`chosen_clips`: the tiny model is barely trained, and the stream scores what its detector
cuts from audio the browser resampled). On a server with an API
key too: the browser logs in to the page (user `ser`, the key), and the page opens its stream with
a single-use ticket it asks for with that login (serving/stream_tickets.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from ser_lightning.serving.streaming import STREAM_SAMPLE_RATE, StreamSegmenter, StreamSettings

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides
from .helpers.models import TINY_TRAINING
from .helpers.serving import fake_microphone_chrome, served
from .test_serving import browser_paths, run_predict

GAP_S = 1.2
API_KEY = "a-browser-key-of-32-characters-x"
# the least gap between a chosen clip's top two probabilities on the stream's path: on a loaded
# machine Chromium's capture of the fake microphone glitches (stretches of a clip repeated or
# lost), which turned clips of margins 0.24-0.5 into another emotion and left those over 0.5 as
# they were
MARGIN = 0.4
# where a clip starts against the detector's 512-sample frames: the stream's first sample is
# wherever the browser began sending, and a cut moved by a few hundred samples can change the
# tiny model's answer, so a chosen clip must keep its emotion at each of these
CUT_OFFSETS = tuple(range(0, 512, 64))


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


def stream_cuts(path: Path, offset: int) -> list[np.ndarray]:
    """The speech segments the stream cuts from a clip as the browser sends it: resampled to 48 kHz
    and back (the page's AudioContext records at 16 kHz from a 48 kHz device), after a gap of
    silence lengthened by `offset` samples, and a gap after it."""
    wave, rate = sf.read(path, dtype="float32")
    assert rate == STREAM_SAMPLE_RATE, path
    resampled = signal.resample_poly(signal.resample_poly(wave, 3, 1), 1, 3).astype(np.float32)
    silence = np.zeros(int(GAP_S * rate), np.float32)
    sent = np.concatenate([np.zeros(len(silence) + offset, np.float32), resampled, silence])
    segmenter = StreamSegmenter(StreamSettings())
    cuts = [c for start in range(0, len(sent), 2048) for c in segmenter.feed(sent[start : start + 2048])]
    return [c.audio for c in cuts + segmenter.finish() if c.kind == "segment"]


def chosen_clips(trained, run_dir) -> list[tuple[str, str, float]]:
    """The clips of Actor 11 and 12 whose emotion holds with a clear margin on the stream's path,
    one per emotion, at most three: (path, emotion, least margin).

    The tiny model is barely trained, and the stream scores what its detector cuts from audio the
    browser resampled, not the file. So each candidate is cut as the stream cuts it (`stream_cuts`)
    at each of `CUT_OFFSETS`, each cut scored by predict, and a clip counts only if it is one
    segment at every offset and all of them give its emotion; its margin is the least gap between
    the top two probabilities among them and the file itself."""
    candidates = sorted((trained.root / "Actor_11").glob("*.wav")) + sorted(
        (trained.root / "Actor_12").glob("*.wav")
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    scored: list[Path] = []
    members: dict[Path, list[Path]] = {}
    for path in candidates:
        cut_files = []
        for offset in CUT_OFFSETS:
            cuts = stream_cuts(path, offset)
            if len(cuts) != 1:
                break
            cut_file = run_dir / f"{path.stem}_cut{offset}.wav"
            sf.write(cut_file, cuts[0], STREAM_SAMPLE_RATE, subtype="FLOAT")
            cut_files.append(cut_file)
        else:
            members[path] = [path, *cut_files]
            scored += members[path]
    records = dict(zip(scored, run_predict(trained, run_dir / "predict", scored), strict=True))
    best: dict[str, tuple[str, str, float]] = {}
    for path, files in members.items():
        emotions = {records[f]["predicted"] for f in files}
        if len(emotions) != 1:
            continue
        (emotion,) = emotions
        margin = min(np.subtract(*sorted(records[f]["probabilities"].values())[::-1][:2]) for f in files)
        if emotion not in best or margin > best[emotion][2]:
            best[emotion] = (str(path), emotion, float(margin))
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

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium must never fetch a browser or driver of its own
    environ = {"SER_API_KEY": API_KEY} if keyed else {}
    with served(
        learned_model, tmp_path / "run", f"upload_dir={tmp_path}", "log_level=warning", environ=environ
    ) as (url, app, _):
        driver = fake_microphone_chrome(browser, driver_path, microphone)
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
