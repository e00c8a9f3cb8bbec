"""ONNX export of a trained model, feature extraction included.

The exported graph is the module's own inference path, traced by torch.export (the dynamo
exporter): `input=waveform` takes conditioned waveforms `(batch, samples)` and contains the
feature extractor (STFT, mel filter bank, dB, normalisation) and the network; `input=features`
takes extracted features `(batch, C, F, T)` and contains normalisation and the network. Both
give `logits` and `probabilities` `(batch, classes)`. The batch size is free; the number of
samples is the model's window (`audio.duration` x `audio.sample_rate`), so a caller decodes,
resamples to mono, peak-normalises and cuts windows as `ser_lightning.inference.windows` does.

The label order, audio settings and input layout are stored in the file's metadata
(`custom_metadata_map` in onnxruntime), so the .onnx file is as self-describing as the checkpoint.

Pretrained encoders (`features=ssl`, `model=ssl_finetune`) are in the graph too, traced by the
same exporter: wav2vec 2.0, HuBERT, WavLM, data2vec-audio and Whisper's encoder (with its log-mel
front end) all export and match PyTorch. A model whose weights pass 2 GB, the most one protobuf
file holds (Whisper large-v3's encoder), keeps them in `<file>.onnx.data` beside the .onnx file
(`external_data_path`); onnxruntime reads both from the same folder.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ser_lightning import __version__
from ser_lightning.calibration import probabilities
from ser_lightning.checkpoint import CHECKPOINT_FORMAT_VERSION
from ser_lightning.utils.config import PYTREE_NOTICE
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only: onnxruntime is imported where a session is opened
    import onnxruntime

    from ser_lightning.model import SERModel

log = logging.getLogger(__name__)
# The exporter's graph passes log every rewrite and folded constant at INFO.
for _name in ("onnx_ir", "onnxscript"):
    logging.getLogger(_name).setLevel(logging.WARNING)

INPUT_KINDS = ("waveform", "features")
OUTPUT_NAMES = ("logits", "probabilities")
DEFAULT_OPSET = 18  # STFT (17+) and the exporter's preferred opset


class ExportedClassifier(nn.Module):
    """An SERModel's inference path as one graph: inputs → (logits, probabilities)."""

    def __init__(self, module: SERModel, input_kind: str = "waveform"):
        super().__init__()
        if input_kind not in INPUT_KINDS:
            raise InvalidSetting(f"input={input_kind!r} must be one of {INPUT_KINDS}")
        if module.features.needs_dataset_stats:
            raise InvalidSetting(
                "the checkpoint's features use normalization=dataset but hold no train-split statistics; "
                "export a checkpoint saved after training started"
            )
        self.module = module.eval()
        self.input_kind = input_kind

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the model's inference path on waveforms or features, as `input_kind` says.

        Args:
            x: a batch of waveforms `(batch, samples)` or features `(batch, *input_shape)`.

        Returns:
            The logits and the probabilities calibrated with the checkpoint's temperature.
        """
        logits = self.module(self.module.inputs({self.input_kind: x}))
        # calibrated with the checkpoint's temperature, a constant of the graph
        return logits, probabilities(logits, self.module.temperature)

    def example_input(self, batch: int = 2) -> torch.Tensor:
        """Make the zeros the exporter traces the graph with.

        Args:
            batch: the example's batch size (the exported batch dimension is dynamic).

        Returns:
            Zeros shaped as one batch of the graph's input.
        """
        if self.input_kind == "waveform":
            return torch.zeros(batch, self.module.audio.num_samples)
        return torch.zeros(batch, *self.module.input_shape)


def onnx_metadata(module: SERModel, input_kind: str) -> dict[str, str]:
    """Collect what a consumer of the .onnx file needs to prepare inputs and read outputs.

    Args:
        module: the exported SERModel.
        input_kind: "waveform" or "features".

    Returns:
        The file's metadata properties: versions, labels, audio settings, features, the input's
        name and shape, the output names and the temperature, each a string (JSON for structures).
    """
    shape = (
        ["batch", module.audio.num_samples] if input_kind == "waveform" else ["batch", *module.input_shape]
    )
    return {
        "ser_lightning_version": __version__,
        "checkpoint_format_version": str(CHECKPOINT_FORMAT_VERSION),
        "labels": json.dumps(list(module.labels)),
        "audio": json.dumps(module.audio.to_dict()),
        "features": json.dumps(module.features_config),
        "input": json.dumps({"name": input_kind, "shape": shape}),
        "outputs": json.dumps(list(OUTPUT_NAMES)),
        "temperature": json.dumps(module.temperature),
    }


def export_onnx(
    module: SERModel, path: str | Path, input_kind: str = "waveform", opset: int = DEFAULT_OPSET
) -> Path:
    """Write the module as a single self-contained .onnx file (weights inside).

    The module is moved to the CPU. Weights over 2 GB are written beside the file by the
    exporter (`external_data_path`).

    Args:
        module: the SERModel to export.
        path: the .onnx file to write; its folder is created.
        input_kind: "waveform" (the graph includes feature extraction) or "features".
        opset: the ONNX opset version.

    Returns:
        The written file's path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportedClassifier(module.to("cpu"), input_kind).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PYTREE_NOTICE)
        program = torch.onnx.export(
            wrapper,
            (wrapper.example_input(),),
            input_names=[input_kind],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    program.model.metadata_props.update(onnx_metadata(module, input_kind))
    # the exporter itself moves the weights out beside the file when they pass 2 GB
    program.save(str(path), external_data=False)
    return path


def external_data_path(path: str | Path) -> Path | None:
    """Find the file beside an exported model that holds its weights, when they pass 2 GB.

    Returns:
        `<path>.data` when it exists, else None.
    """
    data = Path(f"{path}.data")
    return data if data.is_file() else None


def onnx_session(path: str | Path) -> onnxruntime.InferenceSession:
    """Open an exported model with onnxruntime on the CPU.

    Returns:
        The onnxruntime InferenceSession.
    """
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def compare_with_torch(
    module: SERModel, path: str | Path, inputs: np.ndarray, input_kind: str = "waveform"
) -> dict[str, float]:
    """Compare onnxruntime's and PyTorch's outputs on the same inputs.

    Args:
        module: the exported SERModel (moved to the CPU).
        path: the exported .onnx file.
        inputs: a batch of waveforms or features, as `input_kind` says.
        input_kind: "waveform" or "features".

    Returns:
        The largest absolute logit and probability differences, whether both predict the same
        classes, and the number of inputs.
    """
    session = onnx_session(path)
    onnx_logits, onnx_probabilities = session.run(list(OUTPUT_NAMES), {input_kind: inputs.astype(np.float32)})
    wrapper = ExportedClassifier(module.to("cpu"), input_kind).eval()
    with torch.inference_mode():
        logits, probabilities = (t.numpy() for t in wrapper(torch.from_numpy(inputs.astype(np.float32))))
    return {
        "max_abs_logit_diff": float(np.abs(onnx_logits - logits).max()),
        "max_abs_probability_diff": float(np.abs(onnx_probabilities - probabilities).max()),
        "same_predictions": bool((onnx_probabilities.argmax(1) == probabilities.argmax(1)).all()),
        "num_inputs": int(len(inputs)),
    }
