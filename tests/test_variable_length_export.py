"""ONNX export of whole-clip models (data.duration=null): a graph with a free time axis that gives
PyTorch's probabilities on clips of several lengths, longer than any training clip included."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ser_lightning.inference.onnx_export import compare_with_torch, export_onnx, onnx_session
from ser_lightning.utils.errors import InvalidSetting

from .helpers.models import TINY_NET, module_from_config

SMALL_FEATURES = ["features.n_mels=16"]
# clip lengths in samples at 16 kHz: 0.07 s to 9 s (the nominal clip the graph is traced with is 3 s)
LENGTHS = [1100, 7777, 16000, 48000, 144001]


def whole_clip_model(overrides):
    return module_from_config([*overrides, *SMALL_FEATURES], duration=None).model


def noise_clips(lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((1, n)) * 0.3).astype(np.float32) for n in lengths]


@pytest.mark.slow  # about 40 s: one export and a 9 s clip on the shared CPUs
def test_a_whole_clip_graph_takes_clips_of_any_length_and_matches_pytorch(tmp_path):
    model = whole_clip_model(TINY_NET)
    path = export_onnx(model, tmp_path / "whole.onnx")
    clips = noise_clips(LENGTHS)
    parity = compare_with_torch(model, path, clips)
    assert parity["num_inputs"] == len(LENGTHS)
    assert parity["same_predictions"], parity
    assert parity["max_abs_probability_diff"] < 1e-5, parity
    # each clip's probabilities are those the model gives the clip alone, in PyTorch
    session = onnx_session(path)
    for clip in clips:
        with torch.no_grad():
            expected = model.probabilities({"waveform": torch.from_numpy(clip)}).numpy()
        np.testing.assert_allclose(session.run(["probabilities"], {"waveform": clip})[0], expected, atol=1e-5)
    # a batch of equal-length clips runs in one call
    batch = np.concatenate(noise_clips([20000, 20000, 20000], seed=1))
    assert compare_with_torch(model, path, batch)["max_abs_probability_diff"] < 1e-5
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["input"]) == {"name": "waveform", "shape": ["batch", "samples"]}
    assert json.loads(meta["audio"])["duration"] is None


def test_the_network_of_a_whole_clip_model_exports_with_free_frames(tmp_path):
    model = whole_clip_model(TINY_NET)
    path = export_onnx(model, tmp_path / "net.onnx", input_kind="features")
    features = [model.features.extract(torch.from_numpy(c)).numpy() for c in noise_clips(LENGTHS)]
    assert len({f.shape[-1] for f in features}) == len(LENGTHS)
    parity = compare_with_torch(model, path, features, input_kind="features")
    assert parity["same_predictions"] and parity["max_abs_probability_diff"] < 1e-5, parity
    meta = onnx_session(path).get_modelmeta().custom_metadata_map
    assert json.loads(meta["input"])["shape"] == ["batch", 1, 16, "frames"]


def test_a_whole_clip_model_with_an_lstm_is_refused_naming_the_ways_out(tmp_path):
    model = whole_clip_model(["model=crnn_attn", "model.net.conv_channels=[4,8]", "model.net.lstm_hidden=8"])
    with pytest.raises(InvalidSetting, match=r"CRNNAttention.*LSTM.*ser_lightning\.predict.*model=acnt"):
        export_onnx(model, tmp_path / "crnn.onnx")
    assert not (tmp_path / "crnn.onnx").exists()


@pytest.mark.slow  # one export of an encoder graph
def test_a_whole_clip_encoder_model_exports_with_free_length(tmp_path):
    from .test_ssl_features import TINY_CONFIGS

    config_class, model_class, sizes = TINY_CONFIGS["wav2vec2"]
    torch.manual_seed(0)
    layer_norm = {**sizes, "feat_extract_norm": "layer", "do_stable_layer_norm": True}
    model_class(config_class(**layer_norm)).eval().save_pretrained(tmp_path / "encoder")
    model = module_from_config(
        ["features=ssl", f"features.encoder={tmp_path / 'encoder'}", "model=ssl_head"], duration=None
    ).model
    path = export_onnx(model, tmp_path / "ssl.onnx")
    parity = compare_with_torch(model, path, noise_clips([3000, 16000, 50000]))
    assert parity["same_predictions"] and parity["max_abs_probability_diff"] < 1e-5, parity
