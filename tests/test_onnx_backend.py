"""The exported model folder on onnxruntime: INT8, torch-free predict and serve (timelines too), the model card.

The tiny served model (tests/conftest.py) is exported once with quantize=int8; predict and serve
then run it in processes of their own, whose imports are listed by `python -X importtime`, so a
torch import anywhere in their chain fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from ser_lightning.calibration import probabilities, probabilities_numpy
from ser_lightning.export import export
from ser_lightning.inference.model_folder import ModelFolderError
from ser_lightning.inference.onnx_backend import OnnxPredictor
from ser_lightning.inference.predictor import Predictor
from ser_lightning.inference.timeline import TimelineSettings
from ser_lightning.model import SERModel

from .helpers.configs import compose_train
from .test_serving import long_recording, run_predict

REPO = Path(__file__).resolve().parents[1]
# top-1 agreement of INT8 with float32 that the tiny demo model must reach on its files
INT8_TOP1_BOUND = 0.9


@pytest.fixture(scope="module")
def exported(tiny_served_model, tmp_path_factory):
    """The tiny model exported as a folder with model.int8.onnx, and a few of its corpus's files."""
    out = tmp_path_factory.mktemp("exported")
    cfg = compose_train(
        [f"ckpt_path={tiny_served_model.ckpt}", f"model_dir={out / 'model'}", "quantize=int8"],
        out / "run",
        config_name="export",
    )
    summary = export(cfg)
    files = sorted((tiny_served_model.root / "Actor_01").glob("*.wav"))[:12]
    return {"folder": out / "model", "summary": summary, "files": files, "trained": tiny_served_model}


def imported_modules(stderr: str) -> set[str]:
    """The modules `python -X importtime` reported importing."""
    return {
        line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")
    }


def torch_scores(trained, files: list[Path]) -> dict[str, np.ndarray]:
    predictor = Predictor(SERModel.load_from_checkpoint(trained.ckpt), device="cpu")
    return {Path(p.path).name: p.probabilities for p in predictor.predict_files(files)}


def test_numpy_probabilities_equal_the_torch_form():
    import torch

    logits = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32) * 4
    expected = probabilities(torch.from_numpy(logits), 0.7).numpy()
    np.testing.assert_allclose(probabilities_numpy(logits, 0.7), expected, atol=1e-6)


def test_export_writes_a_folder_whose_card_states_the_runs_summary(exported):
    folder, trained = exported["folder"], exported["trained"]
    assert {p.name for p in folder.iterdir()} >= {"model.onnx", "model.int8.onnx", "config.json", "README.md"}
    summary = json.loads((trained.run_dir / "summary.json").read_text())
    card = json.loads((folder / "config.json").read_text())["card"]
    metrics, results = summary["metrics"], summary["test_results"]
    assert card["test"]["scores"] == {
        "ua": metrics["test/ua"],
        "accuracy": metrics["test/acc"],
        "macro_f1": metrics["test/f1"],
    }
    assert card["gender_gap"] == results["gender_gap"]
    assert card["calibration"] == results["calibration"]
    assert card["test"]["intervals"]["ua"] == results["intervals"]["intervals"]["ua"]
    assert card["protocol"]["card_hash"] == (summary.get("protocol_card") or {}).get("hash")
    assert card["corpus"] == summary["protocol"]["corpus"]
    readme = (folder / "README.md").read_text()
    _, front, body = readme.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert {"license", "tags", "datasets", "metrics", "model-index"} <= set(meta)
    (result,) = meta["model-index"][0]["results"]
    by_type = {m["type"]: m["value"] for m in result["metrics"]}
    assert by_type["ua"] == round(metrics["test/ua"], 4)
    assert f"{metrics['test/ua']:.3f}" in body and "Intended use and limitations" in body


def test_int8_agrees_with_float32_on_the_run_test_split(exported):
    agreement = json.loads((exported["folder"] / "int8_agreement.json").read_text())
    assert "test split" in agreement["inputs"] and agreement["num_inputs"] > 0
    assert agreement["top1_agreement"] >= INT8_TOP1_BOUND
    # the same bound through the backend on files of the corpus, against PyTorch itself
    files = exported["files"]
    reference = torch_scores(exported["trained"], files)
    int8 = OnnxPredictor(exported["folder"], precision="int8")
    same = [
        reference[Path(p.path).name].argmax() == p.probabilities.argmax() for p in int8.predict_files(files)
    ]
    assert np.mean(same) >= INT8_TOP1_BOUND


def test_predict_backend_onnx_imports_no_torch_and_agrees_with_torch(exported, tmp_path):
    files = exported["files"]
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "ser_lightning.predict",
            f"ckpt_path={exported['folder']}",
            "inputs=[" + ",".join(str(f) for f in files) + "]",
            "output=json",
            "backend=onnx",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules = imported_modules(done.stderr)
    assert "onnxruntime" in modules and "ser_lightning.inference.onnx_backend" in modules
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    reference = torch_scores(exported["trained"], files)
    assert len(rows) == len(files)
    for row in rows:
        onnx = np.array(list(row["probabilities"].values()))
        np.testing.assert_allclose(onnx, reference[Path(row["file"]).name], atol=1e-4)


def test_predict_backend_onnx_timelines_import_no_torch_and_equal_the_checkpoints(exported, tmp_path):
    recording, spans = long_recording(exported["trained"], tmp_path / "talk.wav")
    run_dir = tmp_path / "onnx"
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "ser_lightning.predict",
            f"ckpt_path={exported['folder']}",
            f"inputs=[{recording}]",
            "output=json",
            "timeline=true",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    modules = imported_modules(done.stderr)
    assert {"onnxruntime", "ser_lightning.inference.speech_activity"} <= modules
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}
    (row,) = [json.loads(line) for line in done.stdout.splitlines()]
    # the checkpoint it was exported from, on PyTorch, in this process
    (want,) = run_predict(exported["trained"], tmp_path / "torch", [recording], "timeline=true")
    assert len(row["timeline"]) == len(spans) and row["predicted"] == want["predicted"]
    for got, ref in zip(row["timeline"], want["timeline"], strict=True):
        assert (got["start_s"], got["end_s"], got["emotion"]) == (
            ref["start_s"],
            ref["end_s"],
            ref["emotion"],
        )
        np.testing.assert_allclose(
            list(got["probabilities"].values()), list(ref["probabilities"].values()), atol=1e-4
        )
    assert [p.name for p in (run_dir / "timelines").glob("*.png")] == ["000_talk.png"]


def test_the_web_pages_long_recording_gets_its_timeline_on_the_onnx_backend(exported, tmp_path):
    """The page asks for timeline="auto" (`EmotionService.analyse_path`), which a model folder
    answered without a timeline before; now it gets the checkpoint's segments and emotions."""
    import asyncio

    import matplotlib.pyplot as plt

    from ser_lightning.inference.timeline import timeline_figure
    from ser_lightning.serving.service import EmotionService, ServiceSettings

    recording, spans = long_recording(exported["trained"], tmp_path / "talk.wav")
    settings = TimelineSettings(smooth_segments=1)
    service = EmotionService(OnnxPredictor(exported["folder"]), {}, ServiceSettings(timeline=settings))

    async def analyse():
        await service.start()
        try:
            return await service.analyse_path(recording, timeline="auto", keep_wave=True)
        finally:
            await service.stop()

    result, decoded = asyncio.run(analyse())
    assert decoded.timeline is not None and result["timeline"] == decoded.timeline.records()
    reference = Predictor(SERModel.load_from_checkpoint(exported["trained"].ckpt), device="cpu")
    expected = reference.timeline(decoded.wave, settings).records()
    assert len(result["timeline"]) == len(spans) == len(expected)
    for got, ref in zip(result["timeline"], expected, strict=True):
        assert (got["start_s"], got["end_s"], got["emotion"]) == (
            ref["start_s"],
            ref["end_s"],
            ref["emotion"],
        )
        np.testing.assert_allclose(
            list(got["probabilities"].values()), list(ref["probabilities"].values()), atol=1e-4
        )
    figure = timeline_figure(decoded.timeline, decoded.wave, service.predictor.audio.sample_rate)
    assert len(figure.axes) == 2  # the page's plot: the waveform and the emotions over time
    plt.close(figure)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_backend_onnx_answers_real_requests_without_torch(exported, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"  # a file: importtime's lines would fill a pipe nobody reads yet
    server = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "ser_lightning.serve",
            f"ckpt_path={exported['folder']}",
            f"port={port}",
            "precision=int8",
            "web=false",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=REPO,
        stderr=log.open("w"),
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
        info = httpx.get(f"{base}/v1/model", timeout=30).json()
        card = json.loads((exported["folder"] / "config.json").read_text())["card"]
        assert info["backend"] == "onnxruntime int8" and info["model_card"] == card
        assert info["test_metrics"]["ua"] == card["test"]["scores"]["ua"]
        int8 = OnnxPredictor(exported["folder"], precision="int8")
        for path in exported["files"][:4]:
            with open(path, "rb") as handle:
                answer = httpx.post(f"{base}/v1/predict", files={"file": (path.name, handle)}, timeout=60)
            assert answer.status_code == 200, answer.text
            served = np.array([answer.json()["probabilities"][k] for k in int8.labels])
            (expected,) = int8.predict_files([path])
            np.testing.assert_allclose(served, expected.probabilities, atol=1e-5)
        recording, spans = long_recording(exported["trained"], tmp_path / "talk.wav")
        with open(recording, "rb") as handle:  # timelines too: the detector runs on onnxruntime
            answer = httpx.post(
                f"{base}/v1/predict",
                files={"file": ("talk.wav", handle)},
                params={"timeline": True},
                timeout=120,
            )
        assert answer.status_code == 200, answer.text
        served = answer.json()["timeline"]
        settings = TimelineSettings.from_config(
            yaml.safe_load((REPO / "conf/serve.yaml").read_text())["timeline"]
        )
        expected = int8.timeline(int8.read(recording), settings).records()
        assert len(served) == len(spans) == len(expected)
        for got, want in zip(served, expected, strict=True):
            assert (got["start_s"], got["end_s"]) == (want["start_s"], want["end_s"])
            # INT8 quantises activations with ranges taken over the whole batch: the server scores the
            # upload's windows and all its segments' in one batch, the direct call each segment apart
            np.testing.assert_allclose(
                list(got["probabilities"].values()), list(want["probabilities"].values()), atol=0.01
            )
            second, first = sorted(want["probabilities"].values())[-2:]
            assert got["emotion"] == want["emotion"] or first - second < 0.02
    finally:
        server.terminate()
        server.wait(timeout=60)
    modules = imported_modules(log.read_text())
    assert "onnxruntime" in modules and "ser_lightning.serving.app" in modules
    assert "ser_lightning.inference.speech_activity" in modules  # the timeline's detector ran
    assert not {m for m in modules if m == "torch" or m.startswith("torch.")}


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c.update(labels=c["labels"][::-1]), "'labels'"),
        (lambda c: c.update(model_path="/etc/passwd"), "unknown keys ['model_path']"),
        (lambda c: c["audio"].update(sample_rate=8000), "'audio'"),
        (lambda c: c.update(temperature=-1.0), "'temperature'"),
    ],
)
def test_a_tampered_config_json_is_refused_naming_the_key(exported, tmp_path, edit, named):
    folder = tmp_path / "model"
    shutil.copytree(exported["folder"], folder)
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError) as raised:
        OnnxPredictor(folder)
    assert str(folder / "config.json") in str(raised.value) and named in str(raised.value)
    assert "export the checkpoint again" in str(raised.value)


def test_the_backend_follows_what_ckpt_path_is_and_refuses_the_wrong_insistence(tmp_path):
    from ser_lightning.inference.onnx_backend import uses_onnx
    from ser_lightning.utils.errors import InvalidSetting

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.onnx").write_bytes(b"")
    ckpt = tmp_path / "best.ckpt"
    assert uses_onnx(folder) and uses_onnx(tmp_path / "x.onnx") and not uses_onnx(ckpt)
    assert uses_onnx(folder, "onnx") and not uses_onnx(ckpt, "torch")
    with pytest.raises(InvalidSetting, match="backend=onnx \\(or auto\\)"):
        uses_onnx(folder, "torch")
    with pytest.raises(InvalidSetting, match="export it first"):
        uses_onnx(ckpt, "onnx")
    with pytest.raises(ModelFolderError, match="must hold|missing"):
        OnnxPredictor(folder)  # "{}" is not a config: refused before the graph is opened


@pytest.mark.slow  # the benchmark at a tiny size: a profile, timings and two static quantisations
def test_the_front_end_benchmark_reports_the_stft_and_static_int8(exported):
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "benchmarks" / "onnx_front_end.py"),
            f"--model-dir={exported['folder']}",
            f"--data-dir={exported['trained'].root}",
            "--repeats=2",
            "--static-int8",
            "--calibration-clips=4",
            "--test-clips=4",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = done.stdout
    assert "| STFT |" in report and "| Conv |" in report  # the profile names the graph's operators
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:-1]
        for line in report.splitlines()
        if line.startswith("| float32") or line.startswith("| static") or line.startswith("| onnxruntime")
        or line.startswith("| numpy")
    }  # fmt: skip
    assert float(rows["onnxruntime's STFT operator"][0]) > 0
    assert float(rows["numpy (the backend's)"][0]) > 0
    for name in ("float32, graph run whole", "float32, STFT on numpy (the backend)"):
        assert float(rows[name][0]) > 0
    for quant_format in ("QDQ", "QOperator"):
        rate, agreement = rows[f"static INT8 ({quant_format}), STFT on numpy"]
        assert float(rate) > 0
        share = float(agreement.split("%")[0])
        assert 0 <= share <= 100 and "windows" in agreement
