"""Where an exported graph spends its time, its STFT on numpy, and static INT8 convolutions.

Given an exported model folder (`python -m ser_lightning.export ... quantize=int8`), on one
onnxruntime thread and batches of 8 windows of demo clips:

- the share of each operator type in onnxruntime's profile of `model.onnx` run whole;
- the STFT alone, ms per window: onnxruntime's `STFT` operator (a one-node graph with the model's
  own frame step, window and frame length), numpy's (`inference.onnx_stft.onnx_stft`, its FFT
  in float64) and numpy's FFT of the same frames in float32;
- windows/s of the graph run whole and as the backend runs it (`StftSplitSession`);
- with `--static-int8`: onnxruntime's static quantisation of the network's convolutions and
  matrix products (QDQ and QOperator formats, calibrated on `--calibration-clips` demo clips,
  the front end kept float32 as `export quantize=int8` keeps it), its windows/s and its top-1
  agreement with float32 on the windows of `--test-clips` other clips.

    .venv/bin/python experiments/benchmarks/onnx_front_end.py --model-dir outputs/export/runs/<date>/model \\
        --static-int8 > experiments/benchmarks/results/onnx_front_end.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
BATCH = 8


def per_window_ms(run, batch: int, repeats: int) -> float:
    """Milliseconds per window of `run()` on a batch, after a warm-up, median of 3 timings."""
    for _ in range(max(2, repeats // 10)):
        run()
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            run()
        timings.append((time.perf_counter() - started) / repeats / batch * 1e3)
    return float(np.median(timings))


def options():
    import onnxruntime

    chosen = onnxruntime.SessionOptions()
    chosen.intra_op_num_threads = 1
    return chosen


def session(model):
    import onnxruntime

    source = model if isinstance(model, str) else model.SerializeToString()
    return onnxruntime.InferenceSession(source, options(), providers=["CPUExecutionProvider"])


def operator_shares(graph: Path, batch: np.ndarray, repeats: int) -> dict[str, float]:
    """Each operator type's share of the kernel time in onnxruntime's profile of the whole graph."""
    import onnxruntime

    profiled = options()
    profiled.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        profiled.profile_file_prefix = str(Path(folder) / "profile")
        whole = onnxruntime.InferenceSession(str(graph), profiled, providers=["CPUExecutionProvider"])
        for _ in range(repeats):
            whole.run(None, {"waveform": batch})
        events = json.loads(Path(whole.end_profiling()).read_text())
    kernel = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            kernel[event["args"]["op_name"]] += event["dur"]
    total = sum(kernel.values())
    return {op: duration / total for op, duration in kernel.most_common()}


def stft_graph(frame_step: int, window: np.ndarray, frame_length: int):
    """A one-node graph of ONNX's STFT operator with the given parameters."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("STFT", ["signal", "step", "window", "length"], ["spectrum"], onesided=1)],
        "stft",
        [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["batch", "samples", 1])],
        [helper.make_tensor_value_info("spectrum", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.array(frame_step, np.int64), "step"),
            numpy_helper.from_array(window.astype(np.float32), "window"),
            numpy_helper.from_array(np.array(frame_length, np.int64), "length"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def static_int8(graph: Path, calibration: np.ndarray, quant_format: str, folder: Path) -> Path:
    """Statically quantise the graph's convolutions and matrix products (front end kept float32)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ser_lightning.inference.onnx_quantize import front_end_nodes

    class Windows(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i : i + BATCH] for i in range(0, len(calibration), BATCH))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"waveform": batch}

    prepared, target = folder / "prepared.onnx", folder / f"static_{quant_format}.onnx"
    quant_pre_process(str(graph), str(prepared), skip_symbolic_shape=True)
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.WARNING)
    try:
        quantize_static(
            str(prepared),
            str(target),
            Windows(),
            quant_format=QuantFormat.QDQ if quant_format == "QDQ" else QuantFormat.QOperator,
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            nodes_to_exclude=front_end_nodes(onnx.load(str(prepared))),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
    finally:
        logging.getLogger().setLevel(quiet)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="an exported model folder")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "demo", help="the demo corpus")
    parser.add_argument("--repeats", type=int, default=100, help="timed calls of each measurement (x3)")
    parser.add_argument("--static-int8", action="store_true", help="measure static INT8 too")
    parser.add_argument(
        "--calibration-clips", type=int, default=64, help="clips static INT8 is calibrated on"
    )
    parser.add_argument("--test-clips", type=int, default=200, help="other clips its agreement is taken on")
    args = parser.parse_args(argv)

    from ser_lightning.inference.onnx_backend import OnnxPredictor
    from ser_lightning.inference.onnx_stft import onnx_stft, stft_split_session

    graph = args.model_dir / "model.onnx"
    predictor = OnnxPredictor(args.model_dir)
    files = sorted(args.data_dir.glob("Actor_*/*.wav"))
    np.random.default_rng(0).shuffle(files)
    needed = args.calibration_clips + args.test_clips if args.static_int8 else BATCH

    def windows_of(chosen) -> np.ndarray:
        clips = [predictor.windows(predictor.read(f), f) for f in chosen]
        return np.concatenate([c.take(np.arange(len(c))) for c in clips]).astype(np.float32)

    calibration = windows_of(files[: args.calibration_clips]) if args.static_int8 else None
    held_out = windows_of(files[args.calibration_clips : needed] if args.static_int8 else files[:BATCH])
    batch = np.ascontiguousarray(held_out[:BATCH])
    load_before = os.getloadavg()[0]

    shares = operator_shares(graph, batch, args.repeats)
    split = stft_split_session(str(graph), options())
    whole = session(str(graph))
    (signal,) = split.before.run([split.signal], {"waveform": batch})
    operator = session(stft_graph(split.frame_step, split.window, split.frame_length))
    frames32 = np.lib.stride_tricks.sliding_window_view(signal[..., 0], split.frame_length, axis=1)[
        :, :: split.frame_step
    ]
    stft_ms = {
        "numpy's FFT in float32 (not used)": per_window_ms(
            lambda: np.fft.rfft(frames32 * split.window, axis=-1), BATCH, args.repeats
        ),
        "onnxruntime's STFT operator": per_window_ms(
            lambda: operator.run(None, {"signal": signal}), BATCH, args.repeats
        ),
        "numpy (the backend's)": per_window_ms(
            lambda: onnx_stft(signal, split.frame_step, split.window, split.frame_length),
            BATCH,
            args.repeats,
        ),
    }
    rates = {
        "float32, graph run whole": 1e3
        / per_window_ms(lambda: whole.run(["probabilities"], {"waveform": batch}), BATCH, args.repeats),
        "float32, STFT on numpy (the backend)": 1e3
        / per_window_ms(lambda: split.run(["probabilities"], {"waveform": batch}), BATCH, args.repeats),
    }
    agreement: dict[str, tuple[float, int]] = {}
    if args.static_int8:
        with tempfile.TemporaryDirectory() as folder:
            for quant_format in ("QDQ", "QOperator"):
                quantised = stft_split_session(
                    str(static_int8(graph, calibration, quant_format, Path(folder))), options()
                )
                name = f"static INT8 ({quant_format}), STFT on numpy"
                rates[name] = 1e3 / per_window_ms(
                    lambda q=quantised: q.run(["probabilities"], {"waveform": batch}), BATCH, args.repeats
                )
                same = sum(
                    int(
                        (
                            quantised.run(["probabilities"], {"waveform": held_out[i : i + BATCH]})[0].argmax(
                                1
                            )
                            == split.run(["probabilities"], {"waveform": held_out[i : i + BATCH]})[0].argmax(
                                1
                            )
                        ).sum()
                    )
                    for i in range(0, len(held_out), BATCH)
                )
                agreement[name] = (same / len(held_out), len(held_out))

    lines = [
        "# An exported graph's time, its STFT on numpy, static INT8",
        "",
        "Command: `python experiments/benchmarks/onnx_front_end.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "`",
        "",
        f"{os.cpu_count()} cores; load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after "
        f"(1 min); one onnxruntime thread, batches of {BATCH} windows of "
        f"{batch.shape[1] / predictor.audio.sample_rate:.1f} s.",
        "",
        "## Operator types in onnxruntime's profile of the graph run whole",
        "",
        "| operator | share of kernel time |",
        "|---|---|",
        *(f"| {op} | {share:.1%} |" for op, share in list(shares.items())[:6]),
        "",
        "## The STFT alone",
        "",
        "| STFT | ms per window |",
        "|---|---|",
        *(f"| {name} | {ms:.3f} |" for name, ms in stft_ms.items()),
        "",
        "## The graph",
        "",
        "| graph | windows/s | top-1 agreement with float32 |",
        "|---|---|---|",
        *(
            f"| {name} | {rate:.1f} | "
            + (f"{agreement[name][0]:.1%} of {agreement[name][1]} windows" if name in agreement else "")
            + " |"
            for name, rate in rates.items()
        ),
        "",
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
