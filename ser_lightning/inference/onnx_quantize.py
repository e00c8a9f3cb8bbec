"""INT8 copies of an exported graph, and how closely they agree with float32.

`export quantize=int8` writes `model.int8.onnx` beside `model.onnx` with onnxruntime's dynamic
quantisation (`quantize_dynamic`): the weights of the network's matrix products (MatMul, Gemm:
its linear and attention projections) are stored as 8-bit integers, and their activations are
quantised per call from their observed range, so no calibration data is needed.

Two parts stay float32, on measurements of the demo model (experiments/benchmarks/results/onnx_backend.md):
- the feature extraction (STFT, mel filter bank, dB), every node before the network's first
  convolution (`front_end_nodes`): the mel filter bank is a MatMul of power spectra whose range
  spans many decades, and INT8 activations there kept the top-1 emotion of only 23 % of the test windows
  (float32: 100 %);
- convolutions: onnxruntime's ConvInteger ran 3x slower than the float convolution on this CPU
  and moved top-1 on 2 % of the windows; quantising only the matrix products kept all of them.
  Static quantisation (QLinearConv or QDQ, calibrated on 95 windows of 64 demo clips) ran the graph
  19-26 % faster but kept top-1 on 288 of 291 windows of 200 other clips (98.97 %), under the 99 %
  asked (experiments/benchmarks/results/onnx_front_end.md).

Quantisation changes the numbers, so export reports the agreement with float32
(`int8_agreement`): the share of inputs whose most probable emotion is the same, and the largest
probability difference, on the test split of the checkpoint's own run (or `verify_inputs`).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: onnx and onnxruntime are imported where they are used
    import onnx
    import onnxruntime

log = logging.getLogger(__name__)

QUANTIZED_OPS = ("MatMul", "Gemm")


def front_end_nodes(model: onnx.ModelProto) -> list[str]:
    """The names of the feature extraction's nodes: those before the network's first convolution.

    A graph without a convolution ends its front end at its last Log (the dB of the spectrum);
    one with neither has no front end recognised (nothing excluded, with a warning).

    Args:
        model: the loaded onnx ModelProto (nodes in topological order, as ONNX requires).

    Returns:
        The node names to keep float32.
    """
    nodes = list(model.graph.node)
    ops = [n.op_type for n in nodes]
    if "Conv" in ops:
        end = ops.index("Conv")
    elif "Log" in ops:
        end = len(ops) - ops[::-1].index("Log")
    else:
        log.warning("no convolution or Log in the graph: its front end is quantised too")
        end = 0
    return [n.name for n in nodes[:end]]


def quantize_int8(source: str | Path, target: str | Path) -> Path:
    """Write a dynamically INT8-quantised copy of an exported graph, its metadata kept.

    The graph is pre-processed first (onnxruntime's shape inference and graph optimisation,
    `quant_pre_process`), which the quantiser needs to know the shapes of the weights it packs.

    Args:
        source: the float32 .onnx file.
        target: the INT8 .onnx file to write.

    Returns:
        The written file.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, target = Path(source), Path(target)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        except Exception as err:  # noqa: BLE001 (the pre-processing is an optimisation, not a need)
            log.warning("onnxruntime's pre-processing failed (%s); quantising the graph as exported", err)
            prepared = source
        # the quantiser logs every tensor it passes over at INFO on the root logger
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.WARNING)
        try:
            quantize_dynamic(
                str(prepared),
                str(target),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(QUANTIZED_OPS),
                nodes_to_exclude=front_end_nodes(onnx.load(str(prepared))),
            )
        finally:
            logging.getLogger().setLevel(quiet)
    # the quantiser writes a new graph: give it the exported graph's metadata (labels, audio, ...)
    exported, quantised = onnx.load(str(source), load_external_data=False), onnx.load(str(target))
    del quantised.metadata_props[:]
    for prop in exported.metadata_props:
        quantised.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(quantised, str(target))
    return target


def int8_agreement(
    fp32_session: onnxruntime.InferenceSession,
    int8_session: onnxruntime.InferenceSession,
    inputs: list[np.ndarray],
    input_name: str = "waveform",
) -> dict:
    """Compare an INT8 graph's probabilities with the float32 graph's on the same inputs.

    Args:
        fp32_session: onnxruntime session of model.onnx.
        int8_session: onnxruntime session of model.int8.onnx.
        inputs: batches of waveforms `(B, samples)` (whole clips: one clip per batch).
        input_name: the graph's input.

    Returns:
        `top1_agreement` (share of inputs with the same most probable emotion), the
        `max_abs_probability_diff`, the `mean_abs_probability_diff` and `num_inputs`.
    """
    same, count, largest, total = 0, 0, 0.0, 0.0
    for batch in inputs:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        (p32,) = fp32_session.run(["probabilities"], {input_name: batch})
        (p8,) = int8_session.run(["probabilities"], {input_name: batch})
        same += int((p32.argmax(1) == p8.argmax(1)).sum())
        diff = np.abs(p32 - p8)
        largest, total = max(largest, float(diff.max())), total + float(diff.mean()) * len(batch)
        count += len(batch)
    return {
        "top1_agreement": same / count if count else float("nan"),
        "max_abs_probability_diff": largest,
        "mean_abs_probability_diff": total / count if count else float("nan"),
        "num_inputs": count,
    }
