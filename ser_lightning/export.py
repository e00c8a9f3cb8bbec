"""Export a checkpoint for serving: `python -m ser_lightning.export ckpt_path=... format=onnx`.

Writes one self-contained .onnx file (weights and metadata inside; by default with the feature
extraction in the graph, see `ser_lightning.inference.onnx_export`) and checks it: onnxruntime
and PyTorch must give the same probabilities on windows of `verify_inputs` (real clips) or, when
none are given, on seeded noise. A checkpoint trained on whole clips (`data.duration=null`)
exports a graph of free length, checked on each verification file whole, or on noise clips of
several lengths (`WHOLE_CLIP_VERIFY_SECONDS`, up to 11.3 s: longer than most training clips).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ser_lightning.checkpoint_encoder import EncoderFiles
from ser_lightning.inference.media import collect_inputs, read_media
from ser_lightning.inference.onnx_export import compare_with_torch, export_onnx, external_data_path
from ser_lightning.inference.windows import clip_windows, whole_clip_window
from ser_lightning.model import SERModel
from ser_lightning.utils.config import CONFIG_DIR, silence_pytree_notice
from ser_lightning.utils.errors import InvalidSetting, exits_on_user_mistake

log = logging.getLogger("ser_lightning.export")

silence_pytree_notice()

FORMATS = ("onnx",)
MAX_VERIFY_WINDOWS = 64
# the lengths of the noise clips a whole-clip graph is checked on when no files are given
WHOLE_CLIP_VERIFY_SECONDS = (0.25, 1.0, 3.7, 11.3)


def whole_clip_verification(model: SERModel, files: list, seed: int = 0) -> tuple[list[np.ndarray], str]:
    """The clips a whole-clip graph is checked on, one `(1, samples)` batch each.

    Args:
        model: The SERModel being exported (its audio settings condition the clips).
        files: Media files to read whole; empty for noise.
        seed: The seed of the noise.

    Returns:
        Each file whole (at most MAX_VERIFY_WINDOWS), or noise clips of WHOLE_CLIP_VERIFY_SECONDS
        at peak 1; and a phrase naming their source.
    """
    audio = model.audio
    if not files:
        rng = np.random.default_rng(seed)
        clips = []
        for seconds in WHOLE_CLIP_VERIFY_SECONDS:
            noise = rng.standard_normal((1, int(round(seconds * audio.sample_rate)))).astype(np.float32)
            clips.append(noise / np.abs(noise).max())
        lengths = ", ".join(f"{s:g}" for s in WHOLE_CLIP_VERIFY_SECONDS)
        return clips, f"seeded noise of {lengths} s"
    clips = [
        whole_clip_window(read_media(path, audio.sample_rate), audio).take([0])
        for path in files[:MAX_VERIFY_WINDOWS]
    ]
    return clips, f"{len(clips)} whole files"


def verification_waveforms(
    model: SERModel, inputs: list[str], seed: int = 0
) -> tuple[np.ndarray | list[np.ndarray], str]:
    """The waveforms the exported model is checked on.

    Args:
        model: The SERModel being exported (its audio settings cut the windows).
        inputs: Files and folders of real clips; empty for noise.
        seed: The seed of the noise.

    Returns:
        Windows `(N, samples)` of real clips (as predict cuts them, at most MAX_VERIFY_WINDOWS),
        or four clips of seeded noise at peak 1 when no inputs are given; for a whole-clip model,
        a list of clips of their own lengths (`whole_clip_verification`); and a phrase naming
        their source.

    Raises:
        InvalidSetting: If an input is missing, not a supported media file, or a folder
            without media.
    """
    audio = model.audio
    if audio.whole_clips and not inputs:
        return whole_clip_verification(model, [], seed)
    if not inputs:
        noise = np.random.default_rng(seed).standard_normal((4, audio.num_samples)).astype(np.float32)
        return noise / np.abs(noise).max(axis=1, keepdims=True), "seeded noise"
    files, errors = collect_inputs(inputs)
    if errors:
        raise InvalidSetting("verify_inputs: " + "; ".join(e.message for e in errors))
    if audio.whole_clips:
        return whole_clip_verification(model, files, seed)
    windows, used = [], 0
    for path in files:
        clip = clip_windows(read_media(path, audio.sample_rate), audio, hop=audio.duration / 2)
        windows.extend(clip.take(np.arange(len(clip))))
        used += 1
        if len(windows) >= MAX_VERIFY_WINDOWS:
            break
    return np.stack(windows[:MAX_VERIFY_WINDOWS]), f"windows of {used} files"


def export(cfg: DictConfig) -> dict:
    """Export a checkpoint, verify the file against PyTorch, and write export.json next to the run.

    Args:
        cfg: The export config (`ckpt_path`, `format`, `input`, `opset`, `verify_inputs`,
            `verify_tolerance`, ...).

    Returns:
        The summary written as export.json: the checkpoint, the .onnx file (and its external
        weights), the input kind, the opset and the parity check.

    Raises:
        InvalidSetting: If `format` is not one of FORMATS, a verification input is missing
            or not media, or a whole-clip network cannot be exported with a free time axis.
        RuntimeError: If onnxruntime's probabilities differ from PyTorch's by more than
            `verify_tolerance`, or its predictions differ.
    """
    if cfg.format not in FORMATS:
        raise InvalidSetting(f"format={cfg.format!r} is not supported; choose from {FORMATS}")
    model = SERModel.load_from_checkpoint(cfg.ckpt_path, encoder_files=EncoderFiles.of_command(cfg))
    output_dir = Path(cfg.paths.output_dir)
    path = (
        Path(cfg.output_path) if cfg.get("output_path") else output_dir / (Path(cfg.ckpt_path).stem + ".onnx")
    )
    export_onnx(model, path, input_kind=cfg.input, opset=cfg.opset)
    weights_file = external_data_path(path)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    if weights_file is not None:
        log.info(
            "its weights (over 2 GB) are in %s (%.1f MB): keep it beside the .onnx file",
            weights_file,
            weights_file.stat().st_size / 1e6,
        )

    waveforms, source = verification_waveforms(model, list(cfg.get("verify_inputs") or []))
    inputs = (
        waveforms
        if cfg.input == "waveform"
        else [model.features.extract(torch.from_numpy(w)).numpy() for w in waveforms]
        if isinstance(waveforms, list)
        else model.features.extract(torch.from_numpy(waveforms)).numpy()
    )
    parity = compare_with_torch(model, path, inputs, cfg.input)
    parity["inputs"] = source
    summary = {
        "checkpoint": str(cfg.ckpt_path),
        "onnx": str(path),
        "onnx_weights": None if weights_file is None else str(weights_file),
        "input": cfg.input,
        "opset": cfg.opset,
        "parity": parity,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "export.json").write_text(json.dumps(summary, indent=2))
    unit = "clips" if model.audio.whole_clips else "windows"
    print(
        f"exported {path}\n"
        f"onnxruntime vs PyTorch on {parity['num_inputs']} {unit} ({source}): "
        f"max |probability diff| {parity['max_abs_probability_diff']:.2e}, "
        f"max |logit diff| {parity['max_abs_logit_diff']:.2e}, same predictions: {parity['same_predictions']}"
    )
    if parity["max_abs_probability_diff"] > cfg.verify_tolerance or not parity["same_predictions"]:
        raise RuntimeError(
            f"the exported model differs from PyTorch by {parity['max_abs_probability_diff']:.2e} "
            f"(verify_tolerance={cfg.verify_tolerance}); do not use {path}"
        )
    return summary


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="export")
@exits_on_user_mistake
def main(cfg: DictConfig) -> None:
    """Run `export` as the Hydra entry point."""
    OmegaConf.resolve(cfg.paths)
    export(cfg)


if __name__ == "__main__":
    main()
