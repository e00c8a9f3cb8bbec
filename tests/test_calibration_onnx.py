"""The ONNX export's probabilities are the checkpoint's calibrated ones."""

import json

import numpy as np
import pytest
import torch

from ser_lightning.inference.onnx_export import OUTPUT_NAMES, export_onnx, onnx_session

from .helpers.models import tiny_module

pytestmark = pytest.mark.slow  # the export traces the model: about 30 s on 2 cores


def test_the_exported_graph_divides_the_logits_by_the_temperature(tmp_path):
    torch.manual_seed(0)
    model = tiny_module().model
    model.calibration = {"method": "temperature", "temperature": 2.5}
    path = export_onnx(model, tmp_path / "model.onnx")
    session = onnx_session(path)
    assert json.loads(session.get_modelmeta().custom_metadata_map["temperature"]) == 2.5
    waves = np.random.default_rng(0).standard_normal((3, model.audio.num_samples)).astype(np.float32)
    logits, probabilities = session.run(list(OUTPUT_NAMES), {"waveform": waves})
    expected = torch.softmax(torch.from_numpy(logits) / 2.5, dim=-1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert not np.allclose(probabilities, torch.softmax(torch.from_numpy(logits), dim=-1).numpy(), atol=1e-3)
    assert probabilities.argmax(1).tolist() == logits.argmax(1).tolist()
