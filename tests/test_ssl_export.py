"""ONNX export of pretrained-encoder models, every family: the graph holds the encoder (and
Whisper's log-mel front end) and gives PyTorch's probabilities. Slow: one export per family."""

from __future__ import annotations

import numpy as np
import pytest

from ser_lightning.inference.onnx_export import compare_with_torch, export_onnx, external_data_path

from .helpers.models import module_from_config
from .test_ssl_features import FAMILIES, tiny_model


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_every_encoder_family_exports_with_the_dynamo_exporter(family, tmp_path):
    tiny_model(family).save_pretrained(tmp_path / family)
    model = module_from_config(
        ["features=ssl", f"features.encoder={tmp_path / family}", "model=ssl_head"], duration=1.0
    ).model
    path = export_onnx(model, tmp_path / f"{family}.onnx")
    assert external_data_path(path) is None
    waves = np.random.default_rng(0).standard_normal((3, 16000)).astype(np.float32) * 0.1
    parity = compare_with_torch(model, path, waves)
    assert parity["same_predictions"], parity
    assert parity["max_abs_probability_diff"] < 1e-5, parity
