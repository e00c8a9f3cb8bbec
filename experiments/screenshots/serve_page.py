"""The web page's screenshot in the docs (docs/serve_page.png), taken on a model that has learned.

    .venv/bin/python experiments/screenshots/serve_page.py [--checkpoint CKPT] [--data data/demo]

1. The checkpoint (default: the best one of the latest `make train` run, found as `make serve`
   finds it) and its run folder: the test UA from its summary.json, the split from its split.csv.
2. A recording of test-split clips (speakers the model never trained on) of several emotions the
   model gets right: every test clip is scored with the Predictor, each speaker's most confident
   correct clip per emotion is kept, and the speaker with the most such emotions is taken. The
   clips are joined with silences between them and the recording's timeline is computed with
   the server's timeline settings; a choice whose timeline does not give one segment per clip
   with that clip's emotion is dropped for the next one.
3. `python -m ser_lightning.serve` in a child process on a free loopback port; headless Chromium
   uploads the recording to the page, waits for the emotion, the timeline table and the plot,
   checks the table against the API's answer for the same file, and saves the screenshot.
4. Prints the clips used, the model's UA and the timeline's emotions.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT_S = 180
PAGE_TIMEOUT_S = 120


def run_of(checkpoint: Path) -> tuple[Path, dict, list[dict]]:
    """The checkpoint's run folder, its summary and its split (rows of split.csv)."""
    run = checkpoint.resolve().parent.parent
    summary_path, split_path = run / "summary.json", run / "split.csv"
    for needed in (summary_path, split_path):
        if not needed.is_file():
            raise SystemExit(
                f"{needed} is missing: the checkpoint must sit in a finished training run's "
                "checkpoints/ folder (its summary.json gives the test UA, its split.csv the test speakers)"
            )
    with open(split_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return run, json.loads(summary_path.read_text()), rows


def test_clips(rows: list[dict], data: Path, labels: list[str]) -> list[dict]:
    """The run's test clips, each with its speaker and label; refuses a split whose test
    speakers also trained the model."""
    speakers = {split: {r["actor"] for r in rows if r["split"] == split} for split in ("train", "test")}
    shared = speakers["train"] & speakers["test"]
    if shared:
        raise SystemExit(
            f"the run's split puts speakers {sorted(shared)} in both train and test: "
            "take a checkpoint of a speaker-independent run (data.split=actor)"
        )
    clips = [
        {"path": data / r["path"], "speaker": r["actor"], "emotion": r["emotion"]}
        for r in rows
        if r["split"] == "test"
    ]
    missing = [c["path"] for c in clips if not c["path"].is_file()]
    if missing:
        raise SystemExit(
            f"{len(missing)} test clips are not under {data} (e.g. {missing[0]}): build it with `make demo`"
        )
    unknown = {c["emotion"] for c in clips} - set(labels)
    if unknown:
        raise SystemExit(f"the split's emotions {sorted(unknown)} are not the model's labels {labels}")
    return clips


def choices(clips: list[dict], emotions: int, per_emotion: int) -> list[list[list[dict]]]:
    """Candidate recordings, best first: per test speaker, `per_emotion` clips in a row of each of
    their `emotions` emotions with the most confident correct clips (the timeline smooths each
    segment with its neighbours, so an emotion held for a few clips is what it can show), speakers
    with more such emotions first; then the same over all test speakers together. Each candidate
    is its runs of clips, one run per emotion."""

    def runs(group: list[dict]) -> list[list[dict]]:
        right: dict[str, list[dict]] = {}
        for clip in sorted(group, key=lambda c: -c["confidence"]):
            if clip["predicted"] == clip["emotion"]:
                right.setdefault(clip["emotion"], []).append(clip)
        held = [found[:per_emotion] for found in right.values() if len(found) >= per_emotion]
        held.sort(key=lambda run: -float(np.mean([c["confidence"] for c in run])))
        return held[:emotions]

    per_speaker = [
        runs([c for c in clips if c["speaker"] == s]) for s in sorted({c["speaker"] for c in clips})
    ]
    per_speaker.sort(
        key=lambda held: (-len(held), -float(np.mean([c["confidence"] for run in held for c in run] or [0])))
    )
    return [held for held in [*per_speaker, runs(clips)] if len(held) >= 3]


def recording(chosen: list[dict], gap_s: float, rate: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The chosen clips joined with `gap_s` of silence around each, and where each lies (seconds)."""
    parts, spans, at = [np.zeros(int(gap_s * rate), np.float32)], [], gap_s
    for clip in chosen:
        wave, clip_rate = sf.read(clip["path"], dtype="float32")
        if clip_rate != rate or wave.ndim != 1:
            raise SystemExit(
                f"{clip['path']} is not mono at {rate} Hz, the model's rate: rebuild it with `make demo`"
            )
        parts += [wave, np.zeros(int(gap_s * rate), np.float32)]
        spans.append((at, at + len(wave) / rate))
        at += len(wave) / rate + gap_s
    return np.concatenate(parts), spans


def pick(
    checkpoint: Path, clips: list[dict], emotions: int, per_emotion: int, gap_s: float
) -> tuple[list[dict], np.ndarray, int]:
    """Score the test clips, and take the first candidate, in the first order of its emotions,
    whose timeline gives one segment per clip with that clip's emotion (the server's timeline
    settings, conf/serve.yaml)."""
    from omegaconf import OmegaConf

    from ser_lightning.checkpoint import read_checkpoint
    from ser_lightning.inference.media import InputError
    from ser_lightning.inference.predictor import Predictor
    from ser_lightning.inference.timeline import TimelineSettings
    from ser_lightning.model import SERModel

    model = SERModel.from_checkpoint(read_checkpoint(checkpoint), checkpoint)
    predictor = Predictor(model, device="cpu")
    print(f"scoring the run's {len(clips)} test clips ...", flush=True)
    for clip, result in zip(clips, predictor.predict_files([c["path"] for c in clips]), strict=True):
        if isinstance(result, InputError):
            raise SystemExit(f"{clip['path']} could not be scored: {result.message}")
        top = int(np.argmax(result.probabilities))
        clip["predicted"], clip["confidence"] = predictor.labels[top], float(result.probabilities[top])
    right = sum(c["predicted"] == c["emotion"] for c in clips)
    print(f"  {right} of {len(clips)} right ({100 * right / len(clips):.1f} %)", flush=True)
    settings = TimelineSettings.from_config(OmegaConf.load(ROOT / "conf" / "serve.yaml").timeline)
    rate = predictor.audio.sample_rate
    for held in choices(clips, emotions, per_emotion):
        for order in itertools.permutations(held):
            chosen = [clip for run in order for clip in run]
            wave, spans = recording(chosen, gap_s, rate)
            timeline = predictor.timeline(wave, settings)
            found = [(s.start, s.end, s.emotion(predictor.labels)) for s in timeline.segments]
            if len(found) == len(chosen) and all(
                start < clip_end and end > clip_start and emotion == clip["emotion"]
                for (start, end, emotion), (clip_start, clip_end), clip in zip(
                    found, spans, chosen, strict=True
                )
            ):
                return chosen, wave, rate
        print(
            f"  no order of {[run[0]['emotion'] for run in held]} by speakers "
            f"{sorted({c['speaker'] for run in held for c in run})} gives a timeline of those emotions",
            flush=True,
        )
    raise SystemExit(
        "no choice of test clips gives a timeline of their emotions: try --emotions 3, --per-emotion 3 or --gap 1.5"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def serve(checkpoint: Path, work: Path) -> tuple[subprocess.Popen, str, Path]:
    """`python -m ser_lightning.serve` (page included) in a child process; returns once /health answers."""
    import httpx

    port = free_port()
    url = f"http://{HOST}:{port}"
    overrides = [
        f"ckpt_path={checkpoint}",
        f"host={HOST}",
        f"port={port}",
        "device=cpu",
        "log_level=warning",
        f"hydra.run.dir={work / 'serve'}",
    ]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("SER_API_KEY", None)
    log = work / "server.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "ser_lightning.serve", *overrides],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=handle,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url, log
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(process)
    raise SystemExit(
        f"the server did not answer /health within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def browser_paths() -> tuple[str, str]:
    """The OS's Chromium and its driver (Debian: apt-get install chromium chromium-driver)."""
    browser = os.environ.get("SER_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    driver = os.environ.get("SER_CHROMEDRIVER") or shutil.which("chromedriver")
    if not (browser and driver):
        raise SystemExit(
            f"{'Chromium' if not browser else 'chromedriver'} is not installed: the screenshot is taken with the "
            "OS's headless Chromium (Debian: apt-get install chromium chromium-driver), or set SER_CHROMIUM and "
            "SER_CHROMEDRIVER to their paths"
        )
    return browser, driver


def screenshot(url: str, upload: Path, expected: list[str], output: Path, size: str) -> None:
    """Upload the recording to the page in headless Chromium, wait for its answer, save the page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={size}"):
        options.add_argument(argument)
    os.environ["SE_OFFLINE"] = "true"  # Selenium must never fetch a browser or driver of its own
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"{url}/")
        wait = WebDriverWait(driver, PAGE_TIMEOUT_S)
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#recording input[type=file]")).send_keys(
            str(upload)
        )
        rows_css = "#segments table tbody tr"
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows_css)) == len(expected))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#emotion [data-testid='label-output-value']"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#timeline-plot img, #timeline-plot svg"))
        shown = [
            r.find_elements(By.CSS_SELECTOR, "td")[2].text.strip()
            for r in driver.find_elements(By.CSS_SELECTOR, rows_css)
        ]
        if shown != expected:
            raise SystemExit(f"the page's timeline {shown} is not the API's {expected}")
        time.sleep(1.0)  # let the plot and the bars finish drawing
        # grow the window to the page's height, so the whole table is in the picture
        page_height, inner = driver.execute_script(
            "return [document.documentElement.scrollHeight, window.innerHeight]"
        )
        if page_height > inner:
            size = driver.get_window_size()
            driver.set_window_size(size["width"], size["height"] + page_height - inner)
            time.sleep(1.0)
        output.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(output))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the latest run's best")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "demo", help="the run's demo corpus")
    parser.add_argument("--emotions", type=int, default=4, help="this many different emotions")
    parser.add_argument("--per-emotion", type=int, default=2, help="clips of each emotion in a row")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds of silence around each clip")
    parser.add_argument(
        "--size", default="1280,1600", help="the browser window, width,height (grown to fit the page)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "serve_page.png")
    args = parser.parse_args()

    from ser_lightning.serving.latest import latest_checkpoint

    checkpoint = args.checkpoint or latest_checkpoint(ROOT / "outputs" / "train" / "runs")
    if checkpoint is None:
        raise SystemExit("no checkpoint: train one (make train) or pass --checkpoint")
    checkpoint = Path(checkpoint).resolve()
    run, summary, rows = run_of(checkpoint)
    ua = summary.get("metrics", {}).get("test/ua")
    clips = test_clips(rows, args.data, list(summary.get("labels") or []))
    print(
        f"checkpoint {checkpoint}\n  run {run.name}: test UA {ua:.3f}, split {summary.get('split')}",
        flush=True,
    )
    chosen, wave, rate = pick(checkpoint, clips, args.emotions, args.per_emotion, args.gap)

    import httpx

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        speakers = "-".join(sorted({c["speaker"] for c in chosen}))
        emotions = len({c["emotion"] for c in chosen})
        upload = work / f"test_speaker_{speakers}_{emotions}_emotions.wav"
        sf.write(upload, wave, rate, subtype="FLOAT")
        process, url, _ = serve(checkpoint, work)
        try:
            with open(upload, "rb") as handle:
                reply = httpx.post(
                    f"{url}/v1/predict", files={"file": handle}, params={"timeline": "true"}, timeout=120
                )
            if reply.status_code != 200:
                raise SystemExit(f"the API answered {reply.status_code}: {reply.text}")
            answer = reply.json()
            timeline = [s["emotion"] for s in answer["timeline"]]
            if timeline != [c["emotion"] for c in chosen]:
                raise SystemExit(
                    f"the API's timeline {timeline} is not the clips' emotions (the script's own was)"
                )
            print(f"browser: uploading {upload.name} ({len(wave) / rate:.1f} s) to {url}/ ...", flush=True)
            screenshot(url, upload, timeline, args.output, args.size)
        finally:
            stop(process)

    print(f"\nclips (test speakers {speakers}, never in training):")
    for clip in chosen:
        print(
            f"  {clip['path'].relative_to(args.data)}  {clip['emotion']:<10} predicted with {100 * clip['confidence']:.1f} %"
        )
    print(
        f"model: {checkpoint.relative_to(ROOT) if checkpoint.is_relative_to(ROOT) else checkpoint}, test UA {ua:.3f}"
    )
    print(f"whole recording: {answer['emotion']} ({100 * answer['confidence']:.1f} %)")
    print(
        "timeline: "
        + " -> ".join(f"{s['emotion']} ({s['start_s']:.1f}-{s['end_s']:.1f} s)" for s in answer["timeline"])
    )
    print(f"screenshot: {args.output}")


if __name__ == "__main__":
    main()
