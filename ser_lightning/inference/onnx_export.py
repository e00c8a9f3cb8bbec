"""ONNX export of a trained model, feature extraction included.

The exported graph is the module's own inference path, traced by torch.export (the dynamo
exporter): `input=waveform` takes conditioned waveforms `(batch, samples)` and contains the
feature extractor (STFT, mel filter bank, dB, normalisation) and the network; `input=features`
takes extracted features `(batch, C, F, T)` and contains normalisation and the network. Both
give `logits` and `probabilities` `(batch, classes)`. The batch size is free; the number of
samples is the model's window (`audio.duration` x `audio.sample_rate`), so a caller decodes,
resamples to mono, peak-normalises and cuts windows as `ser_lightning.inference.windows` does.

A model trained on whole clips (`data.duration=null`) exports a graph whose time axis is free
too: `(batch, samples)` waveforms or `(batch, C, F, frames)` features of any length, and every
clip of one call has the same length (one clip per call, as predict scores whole files). The
graph takes no padded batch with lengths on purpose: a clip's last frames see the STFT's
reflected edge, which padding would replace, so a padded batch could not give each clip what it
gets alone. Networks with an LSTM are refused (`check_exportable`): torch.export specialises an
LSTM's time axis once pooling has shortened it, so their graph would take one length only.

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
from ser_lightning.inference.model_folder import DIMENSIONS_OUTPUT
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


def output_names(module: SERModel) -> tuple[str, ...]:
    """The graph's outputs: logits and probabilities (with classes), then dimensions (with them).

    Returns:
        The names, in the order the graph returns them.
    """
    task = module.task
    return (OUTPUT_NAMES if task.has_categories else ()) + (
        (DIMENSIONS_OUTPUT,) if task.has_dimensions else ()
    )


DEFAULT_OPSET = 18  # STFT (17+) and the exporter's preferred opset
# The shortest clip a whole-clip graph takes, in samples (the STFT's reflected edge needs more
# samples than half its window; 1024 covers every front end's n_fft of up to 2048)
MIN_WHOLE_CLIP_SAMPLES = 1025


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
        self.whole_clips = module.audio.whole_clips

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the model's inference path on waveforms or features, as `input_kind` says.

        Args:
            x: a batch of waveforms `(batch, samples)` or features `(batch, *input_shape)`.

        Returns:
            The logits and the probabilities calibrated with the checkpoint's temperature, then
            (task dimensional or multitask) the dimensions on the corpus's scale (`output_names`).
        """
        logits, dimensions = self.module.outputs(self.module.inputs({self.input_kind: x}))
        outputs = ()
        if logits is not None:  # calibrated with the checkpoint's temperature, a constant of the graph
            outputs = (logits, probabilities(logits, self.module.temperature))
        if dimensions is not None:
            outputs += (self.module.dimension_scale.denormalise(dimensions),)
        return outputs

    def example_input(self, batch: int = 2) -> torch.Tensor:
        """Make the zeros the exporter traces the graph with.

        Args:
            batch: the example's batch size (the exported batch dimension is dynamic).

        Returns:
            Zeros shaped as one batch of the graph's input (of the nominal 3 s clip of a
            whole-clip model, whose exported time axis is dynamic).
        """
        if self.input_kind == "waveform":
            return torch.zeros(batch, self.module.audio.sizing_samples)
        return torch.zeros(batch, *self.module.input_shape)

    def dynamic_shapes(self) -> tuple[dict, ...]:
        """Name the input's free axes: the batch, and the time axis of a whole-clip model.

        Returns:
            The exporter's `dynamic_shapes` for the one input.
        """
        axes = {0: torch.export.Dim("batch", min=1)}
        if self.whole_clips:
            time_axis = 1 if self.input_kind == "waveform" else len(self.module.input_shape)
            # the shortest clip the front end takes: more samples than half its STFT window
            shortest = self.module.features.output_shape(MIN_WHOLE_CLIP_SAMPLES)[2]
            axes[time_axis] = torch.export.Dim(
                "samples" if self.input_kind == "waveform" else "frames",
                min=MIN_WHOLE_CLIP_SAMPLES if self.input_kind == "waveform" else shortest,
            )
        return (axes,)


def check_exportable(module: SERModel) -> None:
    """Refuse a whole-clip model whose graph cannot keep a free time axis.

    torch.export specialises an LSTM's time axis to the traced length once ceil-mode pooling
    has shortened it (the guards it writes hold for one length only), so a whole-clip graph of
    model=crnn_attn or cnn_bilstm_mha would take clips of one length. Fixed-length models are
    not concerned (their time axis is fixed anyway).

    Args:
        module: the SERModel to export.

    Raises:
        InvalidSetting: for a whole-clip model whose network holds an LSTM.
    """
    if module.audio.whole_clips and any(isinstance(m, nn.LSTM) for m in module.net.modules()):
        raise InvalidSetting(
            f"export of a whole-clip checkpoint (data.duration=null) of {type(module.net).__name__} is not "
            "possible: torch.export fixes an LSTM's time axis to one length after pooling, so the graph "
            "would score clips of one length only. Score these checkpoints with python -m "
            "ser_lightning.predict or serve, export a whole-clip model=acnt, or train with data.duration "
            "set to a clip length in seconds"
        )


def onnx_metadata(module: SERModel, input_kind: str) -> dict[str, str]:
    """Collect what a consumer of the .onnx file needs to prepare inputs and read outputs.

    Args:
        module: the exported SERModel.
        input_kind: "waveform" or "features".

    Returns:
        The file's metadata properties: versions, labels, audio settings, features, the input's
        name and shape, the output names and the temperature, each a string (JSON for structures).
    """
    if module.audio.whole_clips:  # a free time axis: clips of any length, one length per call
        shape = (
            ["batch", "samples"]
            if input_kind == "waveform"
            else ["batch", *module.input_shape[:-1], "frames"]
        )
    else:
        shape = (
            ["batch", module.audio.num_samples]
            if input_kind == "waveform"
            else ["batch", *module.input_shape]
        )
    return {
        "ser_lightning_version": __version__,
        "checkpoint_format_version": str(CHECKPOINT_FORMAT_VERSION),
        "labels": json.dumps(list(module.labels)),
        "audio": json.dumps(module.audio.to_dict()),
        "features": json.dumps(module.features_config),
        "input": json.dumps({"name": input_kind, "shape": shape}),
        "outputs": json.dumps(list(output_names(module))),
        "temperature": json.dumps(module.temperature),
        **(
            {"dimension_scale": json.dumps(module.dimension_scale.to_dict())}
            if module.task.has_dimensions
            else {}
        ),
    }


def export_onnx(
    module: SERModel, path: str | Path, input_kind: str = "waveform", opset: int = DEFAULT_OPSET
) -> Path:
    """Write the module as a single self-contained .onnx file (weights inside).

    The module is moved to the CPU. Weights over 2 GB are written beside the file by the
    exporter (`external_data_path`). A whole-clip model's graph has a free time axis (see the
    module docstring).

    Args:
        module: the SERModel to export.
        path: the .onnx file to write; its folder is created.
        input_kind: "waveform" (the graph includes feature extraction) or "features".
        opset: the ONNX opset version.

    Returns:
        The written file's path.

    Raises:
        InvalidSetting: for a whole-clip model whose network cannot keep a free time axis
            (`check_exportable`), or an unknown `input_kind`.
    """
    check_exportable(module)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportedClassifier(module.to("cpu"), input_kind).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=PYTREE_NOTICE)
        program = torch.onnx.export(
            wrapper,
            (wrapper.example_input(),),
            input_names=[input_kind],
            output_names=list(output_names(module)),
            dynamic_shapes=wrapper.dynamic_shapes(),
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
    module: SERModel, path: str | Path, inputs: np.ndarray | list[np.ndarray], input_kind: str = "waveform"
) -> dict[str, float]:
    """Compare onnxruntime's and PyTorch's outputs on the same inputs.

    Args:
        module: the exported SERModel (moved to the CPU).
        path: the exported .onnx file.
        inputs: a batch of waveforms or features, as `input_kind` says; or, for a whole-clip
            model, a list of such batches (clips of different lengths), each run on its own.
        input_kind: "waveform" or "features".

    Returns:
        The largest absolute logit and probability differences (and dimension difference, for a
        model with dimensions), whether both predict the same classes, and the number of inputs (clips).
    """
    session = onnx_session(path)
    wrapper = ExportedClassifier(module.to("cpu"), input_kind).eval()
    batches = inputs if isinstance(inputs, list) else [inputs]
    names = output_names(module)
    diffs = dict.fromkeys(names, 0.0)
    same, count = True, 0
    for batch in batches:
        batch = np.asarray(batch, dtype=np.float32)
        onnx_outputs = dict(zip(names, session.run(list(names), {input_kind: batch}), strict=True))
        with torch.inference_mode():
            torch_outputs = dict(
                zip(names, (t.numpy() for t in wrapper(torch.from_numpy(batch))), strict=True)
            )
        for name in names:
            diffs[name] = max(diffs[name], float(np.abs(onnx_outputs[name] - torch_outputs[name]).max()))
        if "probabilities" in names:
            onnx_best, torch_best = (
                onnx_outputs["probabilities"].argmax(1),
                torch_outputs["probabilities"].argmax(1),
            )
            same = same and bool((onnx_best == torch_best).all())
        count += len(batch)
    keys = {"logits": "max_abs_logit_diff", "probabilities": "max_abs_probability_diff"}
    result = {keys.get(name, "max_abs_dimension_diff"): diffs[name] for name in names}
    return {**result, "same_predictions": same, "num_inputs": count}
