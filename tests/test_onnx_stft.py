"""The STFT on numpy beside onnxruntime's: the operator itself, and a split exported graph."""

from __future__ import annotations

import threading

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from ser_lightning.inference.onnx_backend import OnnxPredictor
from ser_lightning.inference.onnx_export import export_onnx, onnx_session
from ser_lightning.inference.onnx_stft import StftSplitSession, onnx_stft, stft_split_session

from .helpers.models import TINY_NET, module_from_config


def stft_graph(frame_step, window, frame_length, step_is_input=False):
    """A one-node model of ONNX's STFT operator (opset 17) over a `(batch, samples, 1)` signal."""
    inputs = [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["batch", "samples", 1])]
    constants = []
    if step_is_input:
        inputs.append(helper.make_tensor_value_info("step", TensorProto.INT64, []))
    else:
        constants.append(numpy_helper.from_array(np.array(frame_step, np.int64), "step"))
    names = ["signal", "step", "", ""]
    if window is not None:
        constants.append(numpy_helper.from_array(window.astype(np.float32), "window"))
        names[2] = "window"
    if frame_length is not None:
        constants.append(numpy_helper.from_array(np.array(frame_length, np.int64), "length"))
        names[3] = "length"
    graph = helper.make_graph(
        [helper.make_node("STFT", names, ["spectrum"], onesided=1)],
        "stft",
        inputs,
        [helper.make_tensor_value_info("spectrum", TensorProto.FLOAT, None)],
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def onnxruntime_session(model) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(
    "frame_length, frame_step, windowed, samples",
    [(1024, 512, True, 48128), (400, 160, True, 16000), (256, 100, False, 5001), (64, 64, True, 64)],
)
def test_onnx_stft_equals_onnxruntimes_operator(frame_length, frame_step, windowed, samples):
    rng = np.random.default_rng(frame_length)
    signal = rng.standard_normal((3, samples, 1)).astype(np.float32)
    window = np.hanning(frame_length + 1)[:-1] if windowed else None
    expected = onnxruntime_session(stft_graph(frame_step, window, frame_length)).run(
        None, {"signal": signal}
    )[0]
    got = onnx_stft(signal, frame_step, None if window is None else window.astype(np.float32), frame_length)
    assert (
        got.shape
        == expected.shape
        == (3, (samples - frame_length) // frame_step + 1, frame_length // 2 + 1, 2)
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())


def test_onnx_stft_refuses_a_signal_shorter_than_a_frame():
    signal = np.random.default_rng(1).standard_normal((2, 100, 1)).astype(np.float32)
    with pytest.raises(ValueError, match="100 samples is shorter than one frame"):
        onnx_stft(signal, 128, np.hanning(256).astype(np.float32), 256)


@pytest.fixture(scope="module")
def tiny_graph(tmp_path_factory):
    """A tiny untrained ACNT exported with its log-mel front end (3 s windows)."""
    model = module_from_config([*TINY_NET, "features.n_mels=16"], duration=3.0).model
    return export_onnx(model, tmp_path_factory.mktemp("stft") / "tiny.onnx")


def test_the_split_graph_gives_the_whole_graphs_outputs(tiny_graph):
    split = stft_split_session(str(tiny_graph), onnxruntime.SessionOptions())
    whole = onnx_session(tiny_graph)
    assert isinstance(split, StftSplitSession)
    assert (split.frame_step, split.frame_length, split.passed) == (
        512,
        1024,
        ["waveform"],
    )  # the demo log-mel
    assert split.get_modelmeta().custom_metadata_map == whole.get_modelmeta().custom_metadata_map
    assert [o.name for o in split.get_outputs()] == [o.name for o in whole.get_outputs()]
    rng = np.random.default_rng(0)
    for batch in (4, 1):
        waves = (rng.standard_normal((batch, 48000)) * 0.2).astype(np.float32)
        for got, expected in zip(
            split.run(None, {"waveform": waves}), whole.run(None, {"waveform": waves}), strict=True
        ):
            np.testing.assert_allclose(got, expected, atol=2e-5)


def test_threads_calling_one_split_session_each_get_their_own_answer(tiny_graph):
    split = stft_split_session(str(tiny_graph), onnxruntime.SessionOptions())
    whole = onnx_session(tiny_graph)
    rng = np.random.default_rng(2)
    batches = [(rng.standard_normal((2, 48000)) * 0.2).astype(np.float32) for _ in range(4)]
    expected = [whole.run(["logits"], {"waveform": b})[0] for b in batches]
    wrong: list[int] = []

    def score(index: int) -> None:
        for _ in range(10):
            (logits,) = split.run(["logits"], {"waveform": batches[index]})
            if not np.allclose(logits, expected[index], atol=2e-5):
                wrong.append(index)

    threads = [threading.Thread(target=score, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []


def test_the_onnx_backend_runs_an_exported_graph_split_and_says_so(tiny_graph):
    predictor = OnnxPredictor(tiny_graph)
    assert isinstance(predictor.session, StftSplitSession)
    assert "STFT on numpy" in predictor.device


def test_a_graph_without_one_constant_stft_is_left_whole(tmp_path):
    window = np.hanning(64).astype(np.float32)
    options = onnxruntime.SessionOptions()
    step_from_caller = tmp_path / "step_input.onnx"
    step_from_caller.write_bytes(stft_graph(32, window, 64, step_is_input=True).SerializeToString())
    assert stft_split_session(str(step_from_caller), options) is None
    no_stft = tmp_path / "relu.onnx"
    relu = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    no_stft.write_bytes(
        helper.make_model(relu, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    )
    assert stft_split_session(str(no_stft), options) is None
