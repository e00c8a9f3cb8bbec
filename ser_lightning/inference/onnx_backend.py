"""Scoring with onnxruntime, without torch: predict and serve `backend=onnx`.

`OnnxPredictor` loads an exported model folder (`inference.model_folder`; `model.onnx`, or
`model.int8.onnx` with `precision=int8`) or a single exported .onnx file, and offers the members
of `inference.predictor.Predictor` that predict's output and the HTTP service use: the same
decoding (`inference.media`), the same windows (`inference.windows`), the same FilePrediction, the
same conformal sets. Only the scoring differs: the graph holds the feature extraction and the
network, and gives probabilities calibrated with the checkpoint's temperature (logits divided by
1 under `calibration=none`, through `calibration.probabilities_numpy`) and, for a model with
dimensions, its `dimensions` output on the corpus's scale, both from one run of the graph
(`inference.window_scores`). A task=dimensional model's graph has the dimensions only. The
graph's STFT runs on numpy's FFT and the rest on onnxruntime (`inference.onnx_stft`): 1.4-1.5x the
windows/s of the graph run whole on the demo model.

Nothing here imports torch: a service image needs onnx, onnxruntime and the audio decoders only
(`tests/test_onnx_backend.py` checks `sys.modules` of a predict and a serve process).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ser_lightning.audio_settings import AudioSettings
from ser_lightning.calibration import probabilities_numpy
from ser_lightning.conformal import conformal_of
from ser_lightning.inference.file_scoring import FileScorer, check_class_settings
from ser_lightning.inference.model_folder import (
    DIMENSIONS_OUTPUT,
    ModelFolderError,
    check_against_graph,
    config_from_metadata,
    is_model_folder,
    model_file,
    read_model_config,
)
from ser_lightning.inference.onnx_stft import StftSplitSession, stft_split_session
from ser_lightning.inference.window_scores import WindowScores
from ser_lightning.inference.windows import ClipWindows
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")


def uses_onnx(ckpt_path: str | Path, backend: str = "auto") -> bool:
    """Decide the backend: onnx for a model folder or .onnx file under `auto`, else as `backend` says.

    Args:
        ckpt_path: the checkpoint, model folder or .onnx file.
        backend: auto, torch or onnx.

    Returns:
        Whether onnxruntime scores (`OnnxPredictor`).

    Raises:
        InvalidSetting: for an unknown backend, or backend=torch given an exported model.
    """
    if backend not in BACKENDS:
        raise InvalidSetting(f"backend={backend!r} must be one of {BACKENDS}")
    exported = is_model_folder(ckpt_path) or str(ckpt_path).endswith(".onnx")
    if backend == "torch" and exported:
        raise InvalidSetting(
            f"ckpt_path={ckpt_path} is an exported ONNX model, which backend=torch cannot run; "
            "use backend=onnx (or auto), or give the .ckpt it was exported from"
        )
    if backend == "onnx" and not exported:
        raise InvalidSetting(
            f"backend=onnx runs an exported model: ckpt_path={ckpt_path} is neither a model folder "
            "(config.json + model.onnx) nor a .onnx file; export it first with python -m "
            "ser_lightning.export ckpt_path=..."
        )
    return exported


def load_onnx_model(path: str | Path, precision: str = "fp32", threads: int | None = None) -> tuple:
    """Open a model folder's graph (or a bare .onnx file) and its checked config.

    Args:
        path: a model folder or an .onnx file written by export.
        precision: fp32 (model.onnx) or int8 (model.int8.onnx), for a folder.
        threads: onnxruntime's intra-op threads; None: its default (all cores).

    Returns:
        The onnxruntime session (a `StftSplitSession` when the graph's STFT can run on numpy,
        `inference.onnx_stft`), the config (config.json, or the graph's own metadata for a bare
        file) and the graph file.

    Raises:
        ModelFolderError: if the folder or file is missing, incomplete or its config differs
            from the graph's metadata.
    """
    import onnxruntime

    path = Path(path)
    if is_model_folder(path):
        graph = model_file(path, precision)
        config = read_model_config(path)
    elif path.is_file() and path.suffix == ".onnx":
        graph, config = path, None
    else:
        raise ModelFolderError(
            f"{path} is neither an exported model folder (config.json + model.onnx) nor a .onnx file"
        )
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = stft_split_session(str(graph), options) or onnxruntime.InferenceSession(
            str(graph), options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # noqa: BLE001 (onnx and onnxruntime raise their own types for a broken file)
        raise ModelFolderError(f"{graph} cannot be opened by onnxruntime ({err}); export again") from None
    fields = config_from_metadata(session.get_modelmeta().custom_metadata_map)
    if config is None:
        config = {**fields, "calibration": None, "quantized": None}
    else:
        check_against_graph(config, fields, str(path / "config.json"))
    return session, config, graph


class OnnxPredictor(FileScorer):
    """Batched scoring of files with an exported graph on onnxruntime (the CPU).

    Args:
        path: a model folder or an exported .onnx file.
        precision: fp32 or int8 (a folder's model.int8.onnx).
        batch_size: the most windows per call of the graph.
        calibrated: the checkpoint's temperature (False: plain softmax of the logits).
        min_confidence: below this top probability a file is answered `uncertain`.
        threads: onnxruntime's intra-op threads (None: all cores).

    Raises:
        InvalidSetting: for a batch size under 1, a graph that takes features, one with dimensions
            but no `dimension_scale` in its metadata, or `min_confidence` or `calibrated=False`
            on a graph without classes.
    """

    def __init__(
        self,
        path: str | Path,
        precision: str = "fp32",
        batch_size: int = 32,
        calibrated: bool = True,
        min_confidence: float = 0.0,
        threads: int | None = None,
    ):
        if batch_size < 1:
            raise InvalidSetting(f"batch_size={batch_size} must be at least 1")
        self.session, self.config, self.graph = load_onnx_model(path, precision, threads)
        if self.config["input"]["name"] != "waveform":
            raise InvalidSetting(
                f"{path} takes features, which need torch to extract; export it with input=waveform"
            )
        outputs = self.config["outputs"]
        has_classes = "probabilities" in outputs
        self.dimension_scale = self.config.get("dimension_scale") if DIMENSIONS_OUTPUT in outputs else None
        if DIMENSIONS_OUTPUT in outputs and self.dimension_scale is None:
            raise InvalidSetting(
                f"{path} gives dimensions but its metadata has no dimension_scale to report them on; "
                "export the checkpoint again with python -m ser_lightning.export"
            )
        self.batch_size = batch_size
        self.calibrated = calibrated
        self.min_confidence = check_class_settings(has_classes, min_confidence, calibrated)
        self.labels = list(self.config["labels"]) if has_classes else []
        self.audio = AudioSettings(**self.config["audio"])
        self.conformal = conformal_of(self.config["calibration"]) if calibrated and has_classes else None
        self.precision = precision if is_model_folder(path) else "fp32"
        stft = ", STFT on numpy" if isinstance(self.session, StftSplitSession) else ""
        self.device = f"cpu (onnxruntime {self.precision}{stft}, {os.cpu_count()} cores)"
        # what one run of the graph returns: the class scores (if any), then the dimensions (if any)
        self.outputs = ([("probabilities" if calibrated else "logits")] if has_classes else []) + (
            [DIMENSIONS_OUTPUT] if self.dimension_scale is not None else []
        )

    @property
    def task(self) -> str:
        """What the graph predicts: categorical, dimensional or multitask (from its outputs)."""
        if not self.labels:
            return "dimensional"
        return "multitask" if self.dimension_scale is not None else "categorical"

    def _run(self, waves: np.ndarray) -> WindowScores:
        out = dict(
            zip(
                self.outputs,
                self.session.run(self.outputs, {"waveform": np.ascontiguousarray(waves, dtype=np.float32)}),
                strict=True,
            )
        )
        probabilities = out.get("probabilities")
        if "logits" in out:  # calibration=none: plain softmax
            probabilities = probabilities_numpy(out["logits"])
        return WindowScores(probabilities, out.get(DIMENSIONS_OUTPUT))

    def waveform_scores(self, waveforms: np.ndarray) -> WindowScores:
        """Score fixed-length waveforms `(N, samples)` in batches of `batch_size`, one run of the graph each.

        Returns:
            Their probabilities `(N, K)` and/or dimensions `(N, 3)`, as the graph gives them.
        """
        waveforms = np.asarray(waveforms, dtype=np.float32)
        out = [
            self._run(waveforms[i : i + self.batch_size]) for i in range(0, len(waveforms), self.batch_size)
        ]
        return WindowScores.concatenate(out) if out else self.empty_scores()

    def waveform_probabilities(self, waveforms: np.ndarray) -> np.ndarray | None:
        """Score fixed-length waveforms `(N, samples)`: their class probabilities.

        Returns:
            Their probabilities `(N, K)`; None for a graph without classes.
        """
        return self.waveform_scores(waveforms).probabilities

    def whole_clip_scores(self, clips: Sequence[np.ndarray]) -> WindowScores:
        """Score whole clips of their own lengths, one run each (the graph takes one length per run).

        Returns:
            Their scores, in the order of `clips`.
        """
        out = [self._run(np.asarray(clip, np.float32)[None]) for clip in clips]
        return WindowScores.concatenate(out) if out else self.empty_scores()

    def whole_clip_probabilities(self, clips: Sequence[np.ndarray]) -> np.ndarray | None:
        """Score whole clips of their own lengths: their class probabilities.

        Returns:
            Their probabilities `(N, K)`, in the order of `clips`; None for a graph without classes.
        """
        return self.whole_clip_scores(clips).probabilities

    def clip_scores(self, clips: Sequence[ClipWindows]) -> WindowScores:
        """Score every window of some clips, clip after clip.

        Returns:
            The scores of all their windows, in order.
        """
        if self.audio.whole_clips:
            return self.whole_clip_scores([c.window_view(0) for c in clips])
        stacked = [c.take(np.arange(len(c))) for c in clips]
        return self.waveform_scores(
            np.concatenate(stacked) if stacked else np.zeros((0, self.audio.num_samples), np.float32)
        )
