"""Export a checkpoint for serving: `python -m ser_lightning.export ckpt_path=... format=onnx`.

Writes a model folder (`inference.model_folder`: model.onnx, config.json and the model card
README.md; with `quantize=int8` also model.int8.onnx and its agreement with float32 on the run's
test split) that predict and serve load as `ckpt_path=<folder>` without torch; `output_path=`
writes the bare .onnx file instead. The graph is one self-contained .onnx file (weights and metadata inside; by default with the feature
extraction in the graph, see `ser_lightning.inference.onnx_export`) and checks it: onnxruntime
and PyTorch must give the same probabilities on windows of `verify_inputs` (real clips) or, when
none are given, on seeded noise. A checkpoint trained on whole clips (`data.duration=null`)
exports a graph of free length, checked on each verification file whole, or on noise clips of
several lengths (`WHOLE_CLIP_VERIFY_SECONDS`, up to 11.3 s: longer than most training clips).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ser_lightning.checkpoint_encoder import EncoderFiles
from ser_lightning.inference.media import collect_inputs, read_media
from ser_lightning.inference.model_folder import (
    CARD_FILE,
    CONFIG_FILE,
    FOLDER_FORMAT,
    FOLDER_FORMAT_VERSION,
    INT8_MODEL_FILE,
    MODEL_FILE,
    check_model_config,
    config_from_metadata,
)
from ser_lightning.inference.onnx_export import (
    compare_with_torch,
    export_onnx,
    external_data_path,
    onnx_session,
)
from ser_lightning.inference.onnx_quantize import int8_agreement, quantize_int8
from ser_lightning.inference.windows import clip_windows, whole_clip_window
from ser_lightning.model import SERModel
from ser_lightning.reporting.model_card import card_facts, card_markdown, run_folder
from ser_lightning.utils.config import CONFIG_DIR, silence_pytree_notice, silence_torchvision_notice
from ser_lightning.utils.errors import InvalidSetting, exits_on_user_mistake

log = logging.getLogger("ser_lightning.export")

silence_pytree_notice()
silence_torchvision_notice()  # torch.onnx's dozen notices about torchvision's operators

FORMATS = ("onnx",)
QUANTIZE = (None, "int8")
MAX_VERIFY_WINDOWS = 64
# the most windows (or whole clips) of the run's test split the INT8 graph is compared on
MAX_AGREEMENT_WINDOWS = 512
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


def test_split_files(ckpt_path: str | Path) -> list[Path]:
    """The test split of the checkpoint's own run, as its test report lists it.

    Args:
        ckpt_path: the checkpoint, in its run's `checkpoints/` folder.

    Returns:
        The test files that exist on this machine (test_report/predictions.csv's paths, relative
        to the corpus root summary.json names); empty when the run recorded none of them.
    """
    run = run_folder(ckpt_path)
    try:
        root = Path(json.loads((run / "summary.json").read_text())["protocol"]["root"])
        with open(run / "test_report" / "predictions.csv", newline="") as handle:
            names = [row["file"] for row in csv.DictReader(handle)]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    files = [root / name if not Path(name).is_absolute() else Path(name) for name in names]
    return [f for f in files if f.is_file()]


def agreement_inputs(model: SERModel, cfg: DictConfig) -> tuple[list[np.ndarray], str]:
    """The inputs the INT8 graph is compared with float32 on.

    `verify_inputs` when given, else the test split of the checkpoint's own run, else seeded
    noise; windows as predict cuts them (whole clips one per batch), at most MAX_AGREEMENT_WINDOWS.

    Returns:
        Batches of waveforms and a phrase naming their source.

    Raises:
        InvalidSetting: if a verification input is missing or not media.
    """
    audio = model.audio
    given = list(cfg.get("verify_inputs") or [])
    if given:
        files, errors = collect_inputs(given)
        if errors:
            raise InvalidSetting("verify_inputs: " + "; ".join(e.message for e in errors))
        source = f"{{}} of {len(files)} verify_inputs files"
    else:
        files = test_split_files(cfg.ckpt_path)
        source = f"{{}} of the run's test split ({len(files)} files)"
    if not files:
        waves, _ = verification_waveforms(model, [])
        batches = waves if isinstance(waves, list) else [waves]
        return batches, "seeded noise (the run's test split was not found)"
    windows: list[np.ndarray] = []
    for path in files:
        wave = read_media(path, audio.sample_rate)
        if audio.whole_clips:
            windows.append(whole_clip_window(wave, audio).take([0]))
        else:
            clip = clip_windows(wave, audio, hop=audio.duration / 2)
            windows.extend(clip.take(np.arange(len(clip))))
        if len(windows) >= MAX_AGREEMENT_WINDOWS:
            break
    windows = windows[:MAX_AGREEMENT_WINDOWS]
    unit = "clips" if audio.whole_clips else "windows"
    if audio.whole_clips:
        return windows, source.format(unit)
    return [np.stack(windows[i : i + 64]) for i in range(0, len(windows), 64)], source.format(unit)


def folder_config(model: SERModel, graph: Path, input_kind: str, quantized: str | None, facts: dict) -> dict:
    """The model folder's config.json: the graph's own metadata record, calibration and the card's facts.

    Args:
        model: the exported SERModel (its calibration record).
        graph: the written model.onnx, whose metadata the config repeats.
        input_kind: the graph's input.
        quantized: "int8" when model.int8.onnx is written, else None.
        facts: the model card's facts (`reporting.model_card.card_facts`).

    Returns:
        The checked config.
    """
    import onnx

    # one record: the config repeats what the written graph's metadata says (onnx_export.onnx_metadata)
    metadata = {p.key: p.value for p in onnx.load(str(graph), load_external_data=False).metadata_props}
    calibration = getattr(model, "calibration", None)
    config = {
        "format": FOLDER_FORMAT,
        "format_version": FOLDER_FORMAT_VERSION,
        **config_from_metadata(metadata),
        "calibration": json.loads(json.dumps(calibration)) if calibration else None,
        "quantized": quantized,
        "card": facts,
    }
    return check_model_config(config)


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
    quantize = cfg.get("quantize")
    if quantize not in QUANTIZE:
        raise InvalidSetting(f"quantize={quantize!r} must be null or int8")
    if quantize and cfg.get("output_path"):
        raise InvalidSetting(
            "quantize=int8 writes model.int8.onnx into the model folder: leave output_path unset"
        )
    model = SERModel.load_from_checkpoint(cfg.ckpt_path, encoder_files=EncoderFiles.of_command(cfg))
    output_dir = Path(cfg.paths.output_dir)
    folder = None if cfg.get("output_path") else Path(cfg.get("model_dir") or output_dir / "model")
    path = Path(cfg.output_path) if folder is None else folder / MODEL_FILE
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
    unit = "clips" if model.audio.whole_clips else "windows"
    print(
        f"exported {path}\nonnxruntime vs PyTorch on {parity['num_inputs']} {unit} ({source}): "
        + parity_text(parity)
    )
    check_parity(parity, model, cfg.verify_tolerance, path)
    if folder is not None:
        summary.update(write_folder(model, cfg, folder, quantize))
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "export.json").write_text(json.dumps(summary, indent=2))
    return summary


def parity_text(parity: dict) -> str:
    """The parity check in one line: each output's largest difference, and whether the classes agree.

    Returns:
        The line.
    """
    parts = [
        f"max |{name} diff| {parity[key]:.2e}"
        for name, key in (
            ("probability", "max_abs_probability_diff"),
            ("logit", "max_abs_logit_diff"),
            ("dimension", "max_abs_dimension_diff"),
        )
        if key in parity
    ]
    if "max_abs_probability_diff" in parity:
        parts.append(f"same predictions: {parity['same_predictions']}")
    return ", ".join(parts)


def check_parity(parity: dict, model: SERModel, tolerance: float, path: Path) -> None:
    """Refuse an exported graph whose outputs differ from PyTorch's.

    Probabilities may differ by `tolerance` (and the top classes must agree); dimensions, on the
    corpus's rating scale, by `tolerance` times the scale's range (high - low).

    Raises:
        RuntimeError: naming the difference, when it is larger.
    """
    limits = {"max_abs_probability_diff": tolerance}
    if model.dimension_scale is not None:
        limits["max_abs_dimension_diff"] = tolerance * (
            model.dimension_scale.high - model.dimension_scale.low
        )
    for key, limit in limits.items():
        if key in parity and parity[key] > limit:
            raise RuntimeError(
                f"the exported model differs from PyTorch by {parity[key]:.2e} ({key}, over "
                f"{limit:.2e}; verify_tolerance={tolerance}); do not use {path}"
            )
    if not parity["same_predictions"]:
        raise RuntimeError(f"the exported model predicts other classes than PyTorch; do not use {path}")


def write_folder(model: SERModel, cfg: DictConfig, folder: Path, quantize: str | None) -> dict:
    """Complete a model folder around its model.onnx: INT8 copy, config.json, model card.

    Args:
        model: the exported SERModel.
        cfg: the export config.
        folder: the folder holding model.onnx.
        quantize: "int8" or None.

    Returns:
        What export.json adds: the folder and, quantised, the INT8 file and its agreement.

    Raises:
        InvalidSetting: for quantize=int8 of a graph that takes features.
    """
    added: dict = {"model_dir": str(folder)}
    if quantize == "int8" and cfg.input == "waveform":
        int8 = quantize_int8(folder / MODEL_FILE, folder / INT8_MODEL_FILE)
        batches, source = agreement_inputs(model, cfg)
        agreement = int8_agreement(onnx_session(folder / MODEL_FILE), onnx_session(int8), batches, cfg.input)
        agreement["inputs"] = source
        (folder / "int8_agreement.json").write_text(json.dumps(agreement, indent=2))
        added.update(int8=str(int8), int8_agreement=agreement)
        print(
            f"INT8 {int8} ({int8.stat().st_size / 1e6:.1f} MB, float32 {(folder / MODEL_FILE).stat().st_size / 1e6:.1f} MB)"
            f" vs float32 on {source}: top-1 agreement {agreement['top1_agreement']:.2%}, "
            f"max |probability diff| {agreement['max_abs_probability_diff']:.3f}"
        )
    elif quantize == "int8":
        raise InvalidSetting("quantize=int8 needs input=waveform (the graph the onnx backend runs)")
    facts = card_facts(cfg.ckpt_path, list(model.labels))
    if "int8_agreement" in added:
        facts["int8_agreement"] = added["int8_agreement"]
    config = folder_config(model, folder / MODEL_FILE, cfg.input, quantize, facts)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    (folder / CARD_FILE).write_text(card_markdown(facts, config))
    print(
        f"model folder {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}\n"
        f"  predict ckpt_path={folder} inputs=[...]   serve ckpt_path={folder}   (onnxruntime, no torch)"
    )
    return added


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="export")
@exits_on_user_mistake
def main(cfg: DictConfig) -> None:
    """Run `export` as the Hydra entry point."""
    OmegaConf.resolve(cfg.paths)
    export(cfg)


if __name__ == "__main__":
    main()
