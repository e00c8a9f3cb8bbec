"""A tiny trained model and the real server over it on a loopback port, for the serving tests."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from ser_lightning.serving.server import build_app, uvicorn_server
from ser_lightning.train import train

from .configs import compose_train
from .corpora import small_demo_overrides
from .models import TINY_TRAINING


def train_tiny_model(demo_root: Path, run_dir: Path, cache_dir: Path) -> SimpleNamespace:
    """A few batches of a small ACNT on the small demo corpus: `.ckpt`, `.run_dir`, `.root`."""
    cfg = compose_train(small_demo_overrides(demo_root) + TINY_TRAINING, run_dir, cache_dir)
    _, objects = train(cfg)
    return SimpleNamespace(ckpt=Path(objects["summary"]["best_checkpoint"]), run_dir=run_dir, root=demo_root)


def serve_config(trained, run_dir: Path, *overrides: str):
    """The composed `serve` config for the tiny model, on the CPU."""
    return compose_train(
        [f"ckpt_path={trained.ckpt}", "device=cpu", *overrides], run_dir, config_name="serve"
    )


@contextmanager
def served(trained, run_dir: Path, *overrides: str, environ: dict | None = None, build: Callable = build_app):
    """The application served by the project's own uvicorn server (its protocol and limits) on a
    free loopback port, in a thread of this process: yields (base URL, app, config).

    `trained.ckpt` is what `ckpt_path` names; `build(cfg, environ=...)` makes the application
    (`server.build_app` for a network's checkpoint; `baseline_service.build_any_app` for a
    baseline's model file too).

    The listening socket is bound here and handed to uvicorn, so no other process can take the
    port between choosing it and serving on it. Gradio keeps its upload folder in the process
    environment (GRADIO_TEMP_DIR); it is put back as it was when this server stops, so servers
    started one after another each keep their own.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    cfg = serve_config(trained, run_dir, f"port={port}", *overrides)
    before = os.environ.get("GRADIO_TEMP_DIR")
    app = build(cfg, environ=environ if environ is not None else {})
    server = uvicorn_server(cfg, app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        thread.join(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app, cfg
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()
        if before is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = before


def fake_microphone_chrome(browser: str, driver_path: str, microphone: Path):
    """Headless Chromium whose microphone plays the WAV `microphone` once, from the start of the
    first capture, with the permission prompt granted (the live page's browser tests)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

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
    return webdriver.Chrome(service=Service(driver_path), options=options)
