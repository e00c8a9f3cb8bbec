"""The graph's short-time Fourier transform on numpy's FFT, the rest of the graph on onnxruntime.

An exported model's graph starts with its feature extraction, and that starts with one ONNX
`STFT` node. onnxruntime's CPU kernel for `STFT` is slow: on the demo model it takes half the
time of the whole graph (47-51 % in onnxruntime's profile; 1.7-1.8 ms per 3 s window against
0.3-0.45 ms for numpy's pocketfft: experiments/benchmarks/results/onnx_front_end.md). `StftSplitSession`
therefore runs such a graph in three parts:

1. the nodes that prepare the STFT's signal (reshaping, reflection padding), on onnxruntime;
2. the `STFT` node itself, as the ONNX operator defines it (`onnx_stft`), on numpy;
3. every node after it, on onnxruntime, given the STFT's output.

The model file is not changed: the split is made in memory when the backend opens the graph, from
the graph's own STFT parameters (frame step, window, frame length), so nothing about the features
is written twice. A graph this does not recognise (no STFT node, several, a complex signal, or
parameters computed at run time) is run whole, as onnxruntime would. Tested against the whole
graph in `tests/test_onnx_stft.py`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: onnx and onnxruntime are imported where they are used
    import onnx
    import onnxruntime

log = logging.getLogger(__name__)


def onnx_stft(
    signal: np.ndarray, frame_step: int, window: np.ndarray | None, frame_length: int
) -> np.ndarray:
    """The ONNX `STFT` operator (opset 17) for a real signal, one-sided, on numpy's FFT.

    Args:
        signal: `(batch, samples, 1)` real signal.
        frame_step: samples between the starts of consecutive frames.
        window: `(frame_length,)` window each frame is multiplied by, or None (no window).
        frame_length: samples per frame (the DFT size).

    Returns:
        `(batch, frames, frame_length // 2 + 1, 2)` float32: the real and imaginary parts, with
        `frames = (samples - frame_length) // frame_step + 1`.

    Raises:
        ValueError: for a signal shorter than one frame.
    """
    samples = signal[..., 0]
    if samples.shape[1] < frame_length:
        raise ValueError(f"a signal of {samples.shape[1]} samples is shorter than one frame ({frame_length})")
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame_length, axis=1)[:, ::frame_step]
    # in float64: no slower than float32 here, within the noise (experiments/benchmarks/onnx_front_end.py)
    frames = frames * (np.float64(1.0) if window is None else window.astype(np.float64))
    spectrum = np.fft.rfft(frames, axis=-1)
    # complex128 holds the real and imaginary parts interleaved: the operator's last axis
    return spectrum.view(np.float64).reshape(*spectrum.shape, 2).astype(np.float32)


def _constants(graph: onnx.GraphProto, names: set[str]) -> dict[str, np.ndarray]:
    """Read some constants of a graph, converting no other tensor (the weights stay as they are).

    Returns:
        The values of those of `names` that are initializers or outputs of Constant nodes.
    """
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name in names}
    for node in graph.node:
        if (
            node.op_type == "Constant"
            and node.output[0] in names
            and len(node.attribute) == 1
            and node.attribute[0].name == "value"
        ):
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _needed(nodes: list, outputs: set[str], stop: str) -> list:
    """Find what a set of tensors is computed from.

    Returns:
        The nodes that `outputs` depend on, in graph order, not looking past the tensor `stop`.
    """
    wanted, keep = set(outputs), []
    for node in reversed(nodes):
        if wanted.intersection(node.output):
            keep.append(node)
            wanted.update(name for name in node.input if name and name != stop)
    return keep[::-1]


def _part(model: onnx.ModelProto, nodes: list, inputs: list[str], outputs: list[str]) -> bytes:
    """Cut a part out of a model, its opsets and metadata kept.

    Returns:
        The serialised model of `nodes` taking `inputs` and giving `outputs` (tensors that are
        not the graph's own inputs or outputs are declared float32 with free shapes).
    """
    import onnx
    from onnx import helper

    graph = model.graph
    known = {v.name: v for v in [*graph.input, *graph.output]}
    used = {name for node in nodes for name in node.input}
    part = helper.make_graph(
        nodes,
        f"{graph.name}_part",
        [
            known.get(name) or helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            for name in inputs
        ],
        [
            known.get(name) or helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            for name in outputs
        ],
        [t for t in graph.initializer if t.name in used],
    )
    split = helper.make_model(part, opset_imports=model.opset_import, ir_version=model.ir_version)
    split.metadata_props.extend(model.metadata_props)
    return split.SerializeToString()


class StftSplitSession:
    """An onnxruntime session of a graph whose one STFT node runs on numpy (see the module).

    Offers what the backend uses of an `onnxruntime.InferenceSession`: `run`, `get_inputs`,
    `get_outputs` and `get_modelmeta`.

    Args:
        before: session of the nodes that prepare the STFT's signal.
        after: session of the nodes after the STFT.
        signal: the name of the STFT's signal tensor (`before`'s output).
        spectrum: the name of the STFT's output tensor (an input of `after`).
        frame_step: the STFT's frame step, read from the graph.
        window: its window (None: none), read from the graph.
        frame_length: its frame length, read from the graph.
        passed: the graph inputs `after` reads directly (e.g. the waveform's shape).
    """

    def __init__(
        self,
        before: onnxruntime.InferenceSession,
        after: onnxruntime.InferenceSession,
        signal: str,
        spectrum: str,
        frame_step: int,
        window: np.ndarray | None,
        frame_length: int,
        passed: list[str],
    ):
        self.before, self.after = before, after
        self.signal, self.spectrum = signal, spectrum
        self.frame_step, self.window, self.frame_length = frame_step, window, frame_length
        self.passed = passed

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the graph, as `InferenceSession.run` does.

        Returns:
            The values of `output_names` (None: all outputs) for the inputs in `feed`.
        """
        (signal,) = self.before.run([self.signal], feed)
        spectrum = onnx_stft(signal, self.frame_step, self.window, self.frame_length)
        return self.after.run(output_names, {self.spectrum: spectrum, **{n: feed[n] for n in self.passed}})

    def get_inputs(self) -> list:
        """Describe the inputs.

        Returns:
            The whole graph's inputs (those of the first part).
        """
        return self.before.get_inputs()

    def get_outputs(self) -> list:
        """Describe the outputs.

        Returns:
            The whole graph's outputs (those of the last part).
        """
        return self.after.get_outputs()

    def get_modelmeta(self) -> onnxruntime.ModelMetadata:
        """Read the metadata.

        Returns:
            The whole graph's metadata (labels, audio settings, ...), kept on the last part.
        """
        return self.after.get_modelmeta()


def stft_split_session(path: str, options: onnxruntime.SessionOptions) -> StftSplitSession | None:
    """Open the graph at `path` as a StftSplitSession, or None if its STFT cannot be split off.

    Args:
        path: the .onnx file.
        options: onnxruntime session options for both onnxruntime parts.

    Returns:
        The split session, or None for a graph without exactly one real-signal STFT node whose
        frame step, window and frame length are constants (the caller runs it whole).
    """
    import onnx
    import onnxruntime

    model = onnx.load(path, load_external_data=False)
    graph = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        return None  # weights in files beside the graph: onnxruntime reads those, with its own checks
    nodes = list(graph.node)
    stfts = [n for n in nodes if n.op_type == "STFT" and n.domain in ("", "ai.onnx")]
    has_subgraphs = any(a.type == onnx.AttributeProto.GRAPH for n in nodes for a in n.attribute)
    if len(stfts) != 1 or has_subgraphs:
        return None
    (stft,) = stfts
    onesided = next((a.i for a in stft.attribute if a.name == "onesided"), 1)
    signal, step, window, length = list(stft.input) + [""] * (4 - len(stft.input))
    constants = _constants(graph, {step, window, length} - {""})
    if onesided != 1 or step not in constants or (window and window not in constants):
        return None
    if length and length not in constants:
        return None
    window_values = constants[window].astype(np.float32) if window else None
    if length:
        frame_length = int(constants[length])
    elif window_values is not None:
        frame_length = len(window_values)
    else:
        return None
    graph_inputs = [v.name for v in graph.input]
    outputs = [v.name for v in graph.output]
    first = _needed(nodes, {signal}, stop="")
    rest = _needed([n for n in nodes if n is not stft], set(outputs), stop=stft.output[0])
    read_after = {name for node in rest for name in node.input}
    passed = [name for name in graph_inputs if name in read_after]
    try:
        before = onnxruntime.InferenceSession(
            _part(model, first, graph_inputs, [signal]), options, providers=["CPUExecutionProvider"]
        )
        after = onnxruntime.InferenceSession(
            _part(model, rest, [stft.output[0], *passed], outputs),
            options,
            providers=["CPUExecutionProvider"],
        )
    except Exception as err:  # noqa: BLE001 (onnxruntime refuses a part: run the graph whole)
        log.warning("the graph's STFT could not be split off (%s); running it whole", err)
        return None
    return StftSplitSession(
        before, after, signal, stft.output[0], int(constants[step]), window_values, frame_length, passed
    )
