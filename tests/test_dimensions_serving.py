"""A task=multitask checkpoint served: real HTTP answers carry arousal, valence and dominance on
the corpus's scale, equal to predict's for the same files; timelines give each segment's
(a task=dimensional checkpoint served: tests/test_dimensional_serving.py).

The model is trained for a few batches: these tests check that the service and predict agree,
not what the model learned (tests/test_dimensions_training.py measures that).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import soundfile as sf

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.model import SERModel
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import small_demo_overrides
from .helpers.models import TINY_TRAINING
from .helpers.serving import served
from .test_dimensional_serving import direct_dimensions
from .test_serving import run_predict  # predict output=json in this process, as the streaming tests use it

DEMO_SCALE = {"low": 1.0, "high": 5.0}


@pytest.fixture(scope="module")
def multitask(small_demo_root, tmp_path_factory):
    """A few batches of the tiny ACNT with task=multitask on the small demo corpus."""
    run_dir = tmp_path_factory.mktemp("multitask_model")
    cfg = compose_train(
        small_demo_overrides(small_demo_root) + TINY_TRAINING + ["task=multitask"],
        run_dir,
        tmp_path_factory.mktemp("multitask_cache"),
    )
    _, objects = train(cfg)
    return SimpleNamespace(
        ckpt=Path(objects["summary"]["best_checkpoint"]), run_dir=run_dir, root=small_demo_root
    )


@pytest.fixture(scope="module")
def server(multitask, tmp_path_factory):
    """The real server (uvicorn, loopback port) over the multitask checkpoint."""
    folder = tmp_path_factory.mktemp("multitask_serve")
    with served(
        multitask, folder / "run", f"upload_dir={folder}", "log_level=warning", "timeline.smooth_segments=1"
    ) as (url, _, _):
        yield url


def post(url: str, path: Path, **params) -> httpx.Response:
    with open(path, "rb") as handle:
        return httpx.post(f"{url}/v1/predict", files={"file": (path.name, handle)}, params=params, timeout=60)


def test_the_api_answers_predicts_dimensions_on_the_corpus_scale(server, multitask, tmp_path):
    files = sorted((multitask.root / "Actor_11").glob("*.wav"))[:2]
    joined = tmp_path / "two_clips.flac"  # longer than the window: several windows, averaged
    sf.write(joined, np.concatenate([sf.read(p, dtype="float32")[0] for p in files]), 16000)
    files.append(joined)
    expected = run_predict(multitask, tmp_path / "predict", files)
    model = SERModel.load_from_checkpoint(multitask.ckpt)
    for path, want in zip(files, expected, strict=True):
        reply = post(server, path)
        assert reply.status_code == 200, reply.text
        got = reply.json()
        assert got["emotion"] == want["predicted"] and got["windows"] == want["windows"]
        assert list(got["dimensions"]) == list(DIMENSIONS) and got["dimension_scale"] == DEMO_SCALE
        np.testing.assert_allclose(
            [got["dimensions"][n] for n in DIMENSIONS], [want["dimensions"][n] for n in DIMENSIONS], atol=1e-4
        )
        assert all(1.0 <= v <= 5.0 for v in got["dimensions"].values())
        # the model run here on predict's windows of the file gives the same values
        direct = direct_dimensions(model, path)
        np.testing.assert_allclose(
            [got["dimensions"][n] for n in DIMENSIONS], [direct[n] for n in DIMENSIONS], atol=1e-4
        )
    assert expected[-1]["windows"] > 1
    info = httpx.get(f"{server}/v1/model", timeout=30).json()
    assert info["task"] == "multitask" and info["dimensions"] == list(DIMENSIONS)
    assert info["dimension_scale"] == DEMO_SCALE
    spec = httpx.get(f"{server}/openapi.json", timeout=30).json()
    assert "dimensions" in spec["components"]["schemas"]["Prediction"]["properties"]


def test_a_timeline_gives_each_segment_the_dimensions_of_its_own_audio(server, multitask, tmp_path):
    """Each segment's dimensions equal predict's on the segment's audio cut out as a file."""
    files = sorted((multitask.root / "Actor_11").glob("*.wav"))[:3]
    gap = np.zeros(16000, np.float32)
    parts = [gap]
    for path in files:
        parts += [sf.read(path, dtype="float32")[0], gap]
    recording = tmp_path / "talk.wav"
    wave = np.concatenate(parts)
    sf.write(recording, wave, 16000, subtype="FLOAT")
    reply = post(server, recording, timeline="true")
    assert reply.status_code == 200, reply.text
    segments = reply.json()["timeline"]
    assert len(segments) >= 2
    cuts = []
    for i, segment in enumerate(segments):
        cut = tmp_path / f"segment{i}.wav"
        start, end = round(segment["start_s"] * 16000), round(segment["end_s"] * 16000)
        sf.write(cut, wave[start:end], 16000, subtype="FLOAT")
        cuts.append(cut)
    expected = run_predict(multitask, tmp_path / "predict", cuts)
    for segment, want in zip(segments, expected, strict=True):
        np.testing.assert_allclose(
            [segment["dimensions"][n] for n in DIMENSIONS],
            [want["dimensions"][n] for n in DIMENSIONS],
            atol=1e-3,
        )
    # predict timeline=true gives the same segments the same dimensions, and the file's own
    (timeline,) = run_predict(multitask, tmp_path / "timeline", [recording], "timeline=true")
    (whole,) = run_predict(multitask, tmp_path / "whole", [recording])
    assert timeline["dimensions"] == pytest.approx(whole["dimensions"], abs=1e-5)
    assert [(s["start_s"], s["end_s"]) for s in timeline["timeline"]] == [
        (s["start_s"], s["end_s"]) for s in segments
    ]
    for segment, want in zip(timeline["timeline"], expected, strict=True):
        assert segment["dimensions"] == pytest.approx(want["dimensions"], abs=1e-3)
    assert len(list((tmp_path / "timeline").glob("timelines/*.png"))) == 1


def test_a_categorical_model_answers_without_dimensions(tiny_served_model, tmp_path):
    with served(tiny_served_model, tmp_path / "run", f"upload_dir={tmp_path}", "log_level=warning") as (
        url,
        _,
        _,
    ):
        clip = sorted((tiny_served_model.root / "Actor_11").glob("*.wav"))[0]
        got = post(url, clip).json()
        info = httpx.get(f"{url}/v1/model", timeout=30).json()
    assert "dimensions" not in got and "dimension_scale" not in got and got["emotion"]
    assert info["task"] == "categorical" and info["dimensions"] is None and info["dimension_scale"] is None


def test_the_page_shows_the_dimensions_and_the_valence_arousal_plane(multitask, tmp_path):
    """The page's own function (what Gradio calls on an upload) over a started multitask service."""
    import asyncio

    from ser_lightning.serving.server import load_service
    from ser_lightning.serving.web import build_page

    from .helpers.serving import serve_config

    clip = sorted((multitask.root / "Actor_11").glob("*.wav"))[0]
    service = load_service(serve_config(multitask, tmp_path / "run", f"upload_dir={tmp_path}"))
    page = build_page(service)
    analyse = next(f.fn for f in page.fns.values() if f.fn.__name__ == "analyse")

    async def scored():
        await service.start()
        try:
            api, _ = await service.analyse_upload(clip.read_bytes(), clip.name)
            return api, await analyse(str(clip), True)
        finally:
            await service.stop()

    api, (probabilities, summary, timeline, table, plane) = asyncio.run(scored())
    assert probabilities == pytest.approx(api["probabilities"], abs=1e-6)
    dims = api["dimensions"]
    assert (
        f"arousal {dims['arousal']:.2f}  valence {dims['valence']:.2f}" in summary
        and "(scale 1-5)" in summary
    )
    ax = plane.axes[0]
    point = ax.lines[-1]  # the recording, drawn last
    assert (point.get_xdata()[0], point.get_ydata()[0]) == pytest.approx(
        (dims["valence"], dims["arousal"]), abs=1e-6
    )
    assert ax.get_xlim() == (1.0, 5.0) and ax.get_ylim() == (1.0, 5.0)
    assert "| arousal | valence |" in table
    # the timeline plot's third panel: arousal and valence of each segment, on the scale
    rated = timeline.axes[2]
    assert rated.get_ylim() == (1.0, 5.0) and [line.get_label() for line in rated.lines] == [
        "arousal",
        "valence",
    ]


def test_a_timeline_without_dimensions_keeps_its_two_panels():
    from ser_lightning.inference.timeline import Timeline, TimelineSegment, timeline_figure

    probabilities = np.array([0.7, 0.3], np.float32)
    segments = [
        TimelineSegment(0.5, 1.5, probabilities, probabilities, 1),
        TimelineSegment(2.0, 3.0, probabilities, probabilities, 1),
    ]
    plain = timeline_figure(Timeline(["angry", "sad"], 4.0, segments), None, 16000)
    assert len(plain.axes) == 2 and Timeline(["angry", "sad"], 4.0, segments).records()[0].keys() == {
        "start_s",
        "end_s",
        "emotion",
        "confidence",
        "probabilities",
    }
    for segment, arousal in zip(segments, (4.5, 1.5), strict=True):
        segment.dimensions = {"arousal": arousal, "valence": 2.0, "dominance": 3.0}
    timeline = Timeline(["angry", "sad"], 4.0, segments, dimension_scale=DEMO_SCALE)
    rated = timeline_figure(timeline, None, 16000).axes[2]
    arousal = rated.lines[0]
    assert list(arousal.get_xdata()[:2]) == [0.5, 1.5] and list(arousal.get_ydata()[:2]) == [4.5, 4.5]
    assert list(arousal.get_ydata()[3:5]) == [1.5, 1.5]
    assert timeline.records()[1]["dimensions"]["arousal"] == 1.5
    # predict's human output names each segment's arousal and valence
    from ser_lightning.inference.output import human_lines
    from ser_lightning.inference.results import FilePrediction

    item = FilePrediction(
        "talk.wav", ["angry", "sad"], probabilities, probabilities[None], [(0.0, 4.0)], 4.0, timeline
    )
    lines = human_lines(item)
    assert lines[-2].endswith("angry (70.0%)  arousal 4.50  valence 2.00") and lines[-1].endswith(
        "arousal 1.50  valence 2.00"
    )
