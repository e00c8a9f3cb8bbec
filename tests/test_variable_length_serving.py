"""Whole-clip checkpoints (data.duration=null) in predict's timeline mode, in the HTTP service and
through the export command: each speech segment and each upload is scored whole, padded batches
give every clip what it gets alone, and the answers equal the model's on each clip alone."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient

from ser_lightning.inference import predictor as predictor_module
from ser_lightning.inference.predictor import Predictor
from ser_lightning.inference.timeline import TimelineSettings
from ser_lightning.inference.windows import whole_clip_window
from ser_lightning.model import SERModel
from ser_lightning.serving.batching import BatchingSettings
from ser_lightning.serving.server import build_app
from ser_lightning.serving.service import EmotionService, ServiceSettings
from ser_lightning.train import train

from .helpers.configs import compose_train
from .helpers.corpora import ragged_tone_corpus
from .helpers.models import TINY_NET
from .helpers.serving import serve_config
from .test_variable_length_run import WHOLE_CLIPS

RATE = 16000
GAP_S = 0.8


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """A tiny ACNT trained for a few batches on whole tone clips of 0.2-1.2 s: (checkpoint, model)."""
    root = tmp_path_factory.mktemp("whole_serving")
    corpus = ragged_tone_corpus(root / "corpus")
    overrides = [
        *WHOLE_CLIPS,
        *TINY_NET,
        f"data.root={corpus}",
        "debug=limit",
        "trainer.max_epochs=1",
        "test=false",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(compose_train(overrides, root / "run", root / "cache"))
    finally:
        torch.set_num_threads(threads)
    ckpt = root / "run" / "checkpoints" / "last.ckpt"
    return ckpt, SERModel.load_from_checkpoint(ckpt)


def alone(model: SERModel, wave: np.ndarray) -> np.ndarray:
    """The model's probabilities of one decoded stretch, conditioned whole as predict conditions a file."""
    clip = whole_clip_window(wave, model.audio).take([0])
    with torch.no_grad():
        return model.probabilities({"waveform": torch.from_numpy(clip)})[0].numpy()


def talk(demo_root, path):
    """Four demo clips of different emotions with silence around each, written to `path`."""
    parts = [np.zeros(int(GAP_S * RATE), np.float32)]
    for emotion, cut in (("01", 1.0), ("04", 0.6), ("05", 1.5), ("08", 0.9)):
        wave, rate = sf.read(demo_root / f"Actor_11/03-01-{emotion}-01-01-01-11.wav", dtype="float32")
        assert rate == RATE
        parts += [wave[: int(cut * rate)], np.zeros(int(GAP_S * RATE), np.float32)]
    wave = np.concatenate(parts)
    sf.write(path, wave, RATE, subtype="FLOAT")
    return wave


def test_padded_batches_of_whole_clips_give_each_clip_its_own_probabilities(whole, monkeypatch):
    _, model = whole
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(n) * 0.2).astype(np.float32) for n in (3000, 16000, 5111, 40000, 9000)]
    predictor = Predictor(model, device="cpu", batch_size=4)  # two padded batches, sorted by length
    together = predictor.whole_clip_probabilities(clips)
    expected = []
    for clip in clips:
        with torch.no_grad():
            expected.append(model.probabilities({"waveform": torch.from_numpy(clip)[None]})[0].numpy())
    np.testing.assert_allclose(together, np.stack(expected), atol=1e-5)
    # a batch holds at most PADDED_BATCH_SECONDS of padded audio: at 2 s (32,000 samples), the
    # three shortest clips go together (3 x 9,000 samples) and the two longest alone
    monkeypatch.setattr(predictor_module, "PADDED_BATCH_SECONDS", 2)
    sizes, score = [], predictor._padded_scores
    monkeypatch.setattr(
        predictor,
        "_padded_scores",
        lambda batch: sizes.append([len(c) for c in batch]) or score(batch),
    )
    np.testing.assert_allclose(predictor.whole_clip_probabilities(clips), np.stack(expected), atol=1e-5)
    assert sizes == [[3000, 5111, 9000], [16000], [40000]]


def test_predict_timeline_scores_each_speech_segment_whole(whole, small_demo_root, tmp_path):
    from ser_lightning.predict import predict

    ckpt, model = whole
    wave = talk(small_demo_root, tmp_path / "talk.wav")
    timeline = Predictor(model, device="cpu").timeline(wave, TimelineSettings(smooth_segments=1))
    assert len(timeline.segments) == 4
    for segment in timeline.segments:
        assert segment.windows == 1  # one clip per segment, of its own length
        a, b = int(round(segment.start * RATE)), int(round(segment.end * RATE))
        np.testing.assert_allclose(segment.raw_probabilities, alone(model, wave[a:b]), atol=1e-5)
    lengths = {round(s.end - s.start, 1) for s in timeline.segments}
    assert len(lengths) > 1
    # the command line: the same segments, smoothed by its settings, and a plot
    cfg = compose_train(
        [f"ckpt_path={ckpt}", "inputs=[]", "device=cpu", "output=json", "timeline=true"],
        tmp_path / "predict",
        config_name="predict",
    )
    cfg.inputs = [str(tmp_path / "talk.wav")]
    stream = io.StringIO()
    predict(cfg, stream=stream)
    (record,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(s["start_s"], s["end_s"]) for s in record["timeline"]] == [
        (round(s.start, 3), round(s.end, 3)) for s in timeline.segments
    ]
    assert len(list((tmp_path / "predict" / "timelines").glob("*.png"))) == 1


def test_the_service_scores_each_upload_whole_and_batches_concurrent_uploads(whole, small_demo_root):
    _, model = whole
    files = [small_demo_root / f"Actor_12/03-01-0{e}-01-01-01-12.wav" for e in (2, 3, 7)]
    waves = [
        sf.read(f, dtype="float32")[0][: int(s * RATE)] for f, s in zip(files, (0.5, 1.5, 1.0), strict=True)
    ]
    uploads = []
    for wave in waves:
        buffer = io.BytesIO()
        sf.write(buffer, wave, RATE, format="WAV", subtype="FLOAT")
        uploads.append(buffer.getvalue())
    settings = ServiceSettings(decode_workers=3, batching=BatchingSettings(max_wait_ms=2000))
    service = EmotionService(Predictor(model, device="cpu"), {}, settings)

    async def run():
        await service.start()
        try:
            return await asyncio.gather(
                *(service.analyse_upload(data, f"clip{i}.wav") for i, data in enumerate(uploads))
            )
        finally:
            await service.stop()

    answers = asyncio.run(run())
    for (answer, _), wave in zip(answers, waves, strict=True):
        assert answer["windows"] == 1
        assert answer["duration_s"] == pytest.approx(len(wave) / RATE, abs=1e-4)
        np.testing.assert_allclose(list(answer["probabilities"].values()), alone(model, wave), atol=1e-5)
    # the three uploads, of three lengths, went through the network as one padded batch
    assert service.batcher.stats.as_dict()["batches"] == 1
    assert service.batcher.stats.windows == 3


def test_the_http_api_gives_a_whole_clip_models_timeline(whole, small_demo_root, tmp_path):
    ckpt, model = whole
    wave = talk(small_demo_root, tmp_path / "talk.wav")
    cfg = serve_config(type("T", (), {"ckpt": ckpt})(), tmp_path / "serve", "timeline.smooth_segments=1")
    with TestClient(build_app(cfg, environ={}), base_url="http://localhost") as client:
        response = client.post(
            "/v1/predict",
            params={"timeline": "true"},
            files={"file": ("talk.wav", (tmp_path / "talk.wav").read_bytes())},
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["windows"] == 1
    np.testing.assert_allclose(list(answer["probabilities"].values()), alone(model, wave), atol=1e-5)
    segments = answer["timeline"]
    assert len(segments) == 4
    for segment in segments:
        a, b = int(round(segment["start_s"] * RATE)), int(round(segment["end_s"] * RATE))
        np.testing.assert_allclose(
            list(segment["probabilities"].values()), alone(model, wave[a:b]), atol=1e-4
        )


@pytest.mark.slow  # an export and its check on noise of up to 11.3 s: about 40 s on the shared CPUs
def test_the_export_command_writes_and_checks_a_whole_clip_graph(whole, small_demo_root, tmp_path):
    from ser_lightning.export import WHOLE_CLIP_VERIFY_SECONDS, export
    from ser_lightning.inference.onnx_export import onnx_session

    ckpt, model = whole
    cfg = compose_train([f"ckpt_path={ckpt}"], tmp_path / "export", config_name="export")
    summary = export(cfg)
    assert summary["parity"]["num_inputs"] == len(WHOLE_CLIP_VERIFY_SECONDS)
    assert summary["parity"]["max_abs_probability_diff"] < 1e-4
    # the file scores a real recording of its own length as the model does
    wave = talk(small_demo_root, tmp_path / "talk.wav")
    clip = whole_clip_window(wave, model.audio).take([0])
    (probabilities,) = onnx_session(summary["onnx"]).run(["probabilities"], {"waveform": clip})
    np.testing.assert_allclose(probabilities[0], alone(model, wave), atol=1e-5)
