"""Dimensions come from the one scoring pass that gives the probabilities, on both backends.

- predict and serve run the network once per batch of windows, and a multitask model's
  dimensions are the mean of the windows' own (checked against `SERModel.dimensions` run here);
- predict's CSV of a multitask model has arousal, valence and dominance columns beside the
  emotion columns, equal to its JSON;
- an exported model folder on onnxruntime (no torch) gives the dimensions PyTorch gives on the
  same files: a multitask folder beside its emotions, a dimensional one alone.

The networks are untrained (real checkpoints of the tiny ACNT on the demo corpus's 1-5 scale):
these tests check that every path gives the model's own values.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.export import export
from ser_lightning.inference.model_folder import ModelFolderError
from ser_lightning.inference.onnx_backend import OnnxPredictor
from ser_lightning.inference.output import json_record
from ser_lightning.inference.predictor import Predictor
from ser_lightning.model import SERModel
from ser_lightning.serving.model_info import onnx_model_info
from ser_lightning.serving.server import load_service
from ser_lightning.utils.errors import InvalidSetting

from .helpers.configs import compose_train
from .helpers.serving import serve_config
from .test_dimensional_serving import DEMO_SCALE, direct_dimensions, saved_model
from .test_streaming import recording

TASKS = ("multitask", "dimensional")


def demo_files(root: Path, folder: Path) -> list[Path]:
    """Three demo clips (two windows each) and a recording of them with silences (many windows)."""
    clips = sorted((root / "Actor_02").glob("*.wav"))[:3]
    wave, _ = recording(root)
    sf.write(folder / "talk.wav", wave, 16000, subtype="FLOAT")
    return [*clips, folder / "talk.wav"]


@pytest.fixture(scope="module")
def multitask(small_demo_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("multitask_scoring")
    ckpt = saved_model("multitask", folder / "multitask.ckpt", seed=3)
    return SimpleNamespace(
        ckpt=ckpt,
        root=small_demo_root,
        model=SERModel.load_from_checkpoint(ckpt),
        files=demo_files(small_demo_root, folder),
    )


class ForwardCount:
    """Counts the network's forward passes and the windows each took (a forward hook)."""

    def __init__(self, model: SERModel):
        self.batches: list[int] = []
        self.handle = model.net.register_forward_hook(
            lambda _, inputs, __: self.batches.append(len(inputs[0]))
        )


def test_predict_and_serve_score_each_window_once(multitask, tmp_path):
    predictor = Predictor(multitask.model, device="cpu", batch_size=64)
    count = ForwardCount(multitask.model)
    try:
        results = list(predictor.predict_files(multitask.files))
        windows = sum(r.windows for r in results)
        assert count.batches == [windows]  # one pass over all windows: the classes and the dimensions
        for path, result in zip(multitask.files, results, strict=True):
            assert result.dimensions == pytest.approx(direct_dimensions(multitask.model, path), abs=1e-5)
            assert result.window_dimensions.shape == (result.windows, 3)
            assert result.dimension_scale == DEMO_SCALE and result.predicted in result.labels
    finally:
        count.handle.remove()
    # the service: the upload's windows and its speech segments' in one call of the batcher
    service = load_service(serve_config(multitask, tmp_path / "run", f"upload_dir={tmp_path}", "web=false"))
    count = ForwardCount(service.predictor.module)
    try:

        async def scored():
            await service.start()
            try:
                return await service.analyse_upload(
                    multitask.files[-1].read_bytes(), "talk.wav", timeline=True
                )
            finally:
                await service.stop()

        record, decoded = asyncio.run(scored())
        segment_windows = sum(len(c) for c in decoded.segment_clips)
        assert count.batches == [record["windows"] + segment_windows]
        assert record["dimensions"] == pytest.approx(results[-1].dimensions, abs=1e-5)
        assert record["emotion"] == results[-1].predicted and len(record["timeline"]) == 3
    finally:
        count.handle.remove()


def test_predict_csv_of_a_multitask_model_has_the_dimension_columns(multitask, tmp_path):
    from ser_lightning.predict import predict

    cfg = compose_train(
        [f"ckpt_path={multitask.ckpt}", "inputs=[]", "device=cpu", "output=json", "per_window=true"],
        tmp_path / "predict",
        config_name="predict",
    )
    cfg.inputs = [str(p) for p in multitask.files[:2]]
    out = io.StringIO()
    predict(cfg, stream=out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    table = pd.read_csv(tmp_path / "predict" / "predictions.csv")
    labels = list(multitask.model.labels)
    assert list(table.columns) == [
        "file",
        "window",
        "start_s",
        "end_s",
        "predicted",
        "confidence",
        *[f"prob_{n}" for n in labels],
        "emotion_set",
        *DIMENSIONS,
        "error",
    ]
    files = table[table["window"].isna()]
    for (_, row), record, path in zip(files.iterrows(), records, multitask.files[:2], strict=True):
        assert row["predicted"] == record["predicted"]
        assert [row[n] for n in DIMENSIONS] == pytest.approx(
            [record["dimensions"][n] for n in DIMENSIONS], abs=1e-5
        )
        assert [row[n] for n in DIMENSIONS] == pytest.approx(
            [direct_dimensions(multitask.model, path)[n] for n in DIMENSIONS], abs=1e-5
        )
        # each window's row has its own dimensions; the file's are their mean
        windows = table[(table["file"] == record["file"]) & table["window"].notna()]
        assert len(windows) == record["windows"] == len(record["window_scores"])
        assert windows[list(DIMENSIONS)].to_numpy().mean(0) == pytest.approx(
            [record["dimensions"][n] for n in DIMENSIONS], abs=1e-5
        )


@pytest.fixture(scope="module", params=TASKS)
def exported(request, small_demo_root, tmp_path_factory):
    """A multitask and a dimensional checkpoint exported as model folders (python -m ser_lightning.export)."""
    folder = tmp_path_factory.mktemp(f"export_{request.param}")
    ckpt = saved_model(request.param, folder / f"{request.param}.ckpt", seed=1)
    summary = export(
        compose_train(
            [f"ckpt_path={ckpt}", f"model_dir={folder / 'model'}"], folder / "run", config_name="export"
        )
    )
    return SimpleNamespace(
        task=request.param,
        ckpt=ckpt,
        folder=folder / "model",
        summary=summary,
        files=demo_files(small_demo_root, folder),
    )


def test_the_onnx_backend_gives_the_dimensions_torch_gives(exported, tmp_path):
    assert exported.summary["parity"]["max_abs_dimension_diff"] < 1e-3
    reference = list(
        Predictor(SERModel.load_from_checkpoint(exported.ckpt), device="cpu").predict_files(exported.files)
    )
    onnx = OnnxPredictor(exported.folder)
    assert onnx.task == exported.task and onnx.dimension_scale == DEMO_SCALE
    for want, got in zip(reference, onnx.predict_files(exported.files), strict=True):
        assert got.windows == want.windows and got.dimension_scale == DEMO_SCALE
        np.testing.assert_allclose(got.window_dimensions, want.window_dimensions, atol=1e-4)
        assert got.dimensions == pytest.approx(want.dimensions, abs=1e-4)
        if exported.task == "multitask":
            np.testing.assert_allclose(got.probabilities, want.probabilities, atol=1e-4)
            assert got.labels == want.labels and got.predicted == want.predicted
        else:
            assert got.probabilities is None and got.labels == [] and "predicted" not in json_record(got)
    info = onnx_model_info(onnx, exported.folder)
    assert info["task"] == exported.task and info["dimensions"] == list(DIMENSIONS)
    assert info["dimension_scale"] == DEMO_SCALE
    # serve backend=onnx answers the same dimensions (and no emotion for a dimensional folder)
    service = load_service(
        serve_config(
            SimpleNamespace(ckpt=exported.folder), tmp_path / "serve", f"upload_dir={tmp_path}", "web=false"
        )
    )

    async def served():
        await service.start()
        try:
            return (await service.analyse_upload(exported.files[0].read_bytes(), "clip.wav"))[0]
        finally:
            await service.stop()

    answer = asyncio.run(served())
    assert answer["dimensions"] == pytest.approx(reference[0].dimensions, abs=1e-4)
    assert ("emotion" in answer) == (exported.task == "multitask")
    # a config.json whose scale is not the graph's is refused
    edited = tmp_path / "edited"
    shutil.copytree(exported.folder, edited)
    config = json.loads((edited / "config.json").read_text())
    config["dimension_scale"] = {"low": 1.0, "high": 7.0}
    (edited / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match="'dimension_scale' is"):
        OnnxPredictor(edited)
    if exported.task == "dimensional":
        with pytest.raises(InvalidSetting, match="min_confidence=0.3.*task=dimensional"):
            OnnxPredictor(exported.folder, min_confidence=0.3)
