"""The emotion in new recordings: `python -m ser_lightning.predict ckpt_path=... inputs='[...]'`.

Inputs are audio files, folders (searched recursively) and videos, whose audio track is
scored. Everything the model needs (labels, feature extraction, audio settings) comes from the
checkpoint, or from a classical baseline's `model.skops` (or its run folder) given as `ckpt_path`
(`ser_lightning.baselines.scoring`). Results go to stdout as they are ready
(`output=human|json|csv`), logs to stderr; an unreadable input (or one longer than
`max_duration_s`) gets its own error row and the others are still scored. The exit status is
1 when any input failed. A model with dimensions (task=multitask) gives each file its arousal,
valence and dominance beside the emotion; a task=dimensional one gives those only.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

import hydra
from omegaconf import DictConfig, OmegaConf

from ser_lightning.inference.media import DEFAULT_MAX_DURATION_S, InputError, collect_inputs
from ser_lightning.inference.onnx_backend import OnnxPredictor, uses_onnx
from ser_lightning.inference.output import CsvWriter, PredictionPrinter
from ser_lightning.inference.predict_steps import (
    check_calibration_option,
    input_list,
    log_summary,
    timeline_predictions,
)
from ser_lightning.inference.results import FilePrediction
from ser_lightning.utils.config import CONFIG_DIR, silence_pytree_notice
from ser_lightning.utils.errors import exits_on_user_mistake

log = logging.getLogger("ser_lightning.predict")

silence_pytree_notice()


def predict(cfg: DictConfig, stream: TextIO | None = None) -> list[FilePrediction | InputError]:
    """Score every input and write each result to `stream` (stdout) as soon as it is ready.

    Args:
        cfg: The predict config (`ckpt_path`, `inputs`, `output`, `timeline`, `save_csv`, ...).
        stream: Where results are written; None for stdout.

    Returns:
        One item per input, in the order written: a FilePrediction, or an InputError for an
        input that could not be scored.
    """
    stream = stream or sys.stdout
    started = time.perf_counter()
    calibrated = check_calibration_option(cfg.get("calibration", "checkpoint"))
    if uses_onnx(cfg.ckpt_path, cfg.get("backend", "auto")):  # an exported model, on onnxruntime: no torch
        predictor = OnnxPredictor(
            cfg.ckpt_path,
            precision=cfg.get("precision", "fp32"),
            batch_size=cfg.batch_size,
            calibrated=calibrated,
            min_confidence=cfg.get("min_confidence", 0.0),
        )
    else:
        from ser_lightning.baselines.scoring import load_scoring_model
        from ser_lightning.checkpoint_encoder import EncoderFiles
        from ser_lightning.inference.predictor import Predictor

        # a network checkpoint, or a baseline model (model.skops or its run folder) behind the same interface
        model = load_scoring_model(cfg.ckpt_path, EncoderFiles.of_command(cfg))
        predictor = Predictor(
            model,
            device=cfg.device,
            batch_size=cfg.batch_size,
            calibrated=calibrated,
            min_confidence=cfg.get("min_confidence", 0.0),
        )
    files, errors = collect_inputs(input_list(cfg.inputs))
    log.info(
        "%d files to score with %s on %s (window %s, long clips: %s)",
        len(files),
        Path(cfg.ckpt_path).name,
        predictor.device,
        "whole clip" if predictor.audio.whole_clips else f"{predictor.audio.duration:.2f} s",
        cfg.long_clips,
    )

    # a model with dimensions (task=dimensional|multitask) writes them beside (or instead of) the classes
    dimensions = predictor.dimension_scale is not None
    printer = PredictionPrinter(stream, cfg.output, predictor.labels, cfg.per_window, dimensions)
    saved = None
    if cfg.get("save_csv"):
        output_dir = Path(cfg.paths.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        saved = open(output_dir / "predictions.csv", "w", newline="")  # noqa: SIM115 (closed below)
    writer = CsvWriter(saved, predictor.labels, cfg.per_window, dimensions) if saved else None
    results: list[FilePrediction | InputError] = []
    max_duration_s = cfg.get("max_duration_s", DEFAULT_MAX_DURATION_S)
    try:
        if cfg.get("timeline"):
            items = timeline_predictions(cfg, predictor, files, max_duration_s)
        else:
            items = predictor.predict_files(
                files,
                hop=cfg.hop,
                long_clips=cfg.long_clips,
                decode_workers=cfg.decode_workers,
                max_duration_s=max_duration_s,
            )
        for item in itertools.chain(errors, items):
            printer.write(item)
            if writer:
                writer.write(item)
            if isinstance(item, InputError):
                log.error("%s", item.message)
            results.append(item)
    finally:
        if saved:
            saved.close()
    log_summary(results, time.perf_counter() - started)
    return results


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict")
@exits_on_user_mistake
def main(cfg: DictConfig) -> None:
    """Run `predict` as the Hydra entry point; exit with status 1 when any input failed."""
    OmegaConf.resolve(cfg.paths)
    results = predict(cfg)
    if any(isinstance(r, InputError) for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
