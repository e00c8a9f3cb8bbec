"""What GET /v1/model says about the served model, read from its checkpoint (and its run)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ser_lightning.dimensions import DIMENSIONS
from ser_lightning.reporting.model_card import card_facts

if TYPE_CHECKING:  # annotations only
    from ser_lightning.inference.onnx_backend import OnnxPredictor
    from ser_lightning.model import SERModel

log = logging.getLogger(__name__)

# The summary `ser_lightning.train` writes into its run directory (the checkpoint's folder's parent).
RUN_SUMMARY = "summary.json"
TEST_METRICS = {"ua": "test/ua", "wa": "test/acc", "f1": "test/f1"}


def _class_name(config: dict | None) -> str | None:
    target = (config or {}).get("_target_")
    return str(target).rsplit(".", 1)[-1] if target else None


def run_test_metrics(ckpt_path: str | Path) -> dict | None:
    """Read the test scores of the run that wrote the checkpoint from its summary.json.

    Train tests the best checkpoint after writing it, so the run's test scores are the checkpoint's.

    Args:
        ckpt_path: the checkpoint, in its run's `checkpoints/` folder.

    Returns:
        `ua`, `wa` and `f1` (those the summary has), or None when the run's summary.json is not
        beside the checkpoint, cannot be read or holds none of them.
    """
    summary_path = Path(ckpt_path).expanduser().resolve().parent.parent / RUN_SUMMARY
    try:
        metrics = json.loads(summary_path.read_text()).get("metrics", {})
    except (OSError, ValueError, AttributeError):
        return None
    found = {
        key: float(metrics[name])
        for key, name in TEST_METRICS.items()
        if isinstance(metrics.get(name), int | float)
    }
    return found or None


def served_task(model: SERModel) -> dict:
    """The task of a served checkpoint and the dimensions its answers give.

    Args:
        model: the served model.

    Returns:
        `task`, `labels` (none for task=dimensional), `dimensions` (their names, or None without
        them) and `dimension_scale`.
    """
    scale = model.dimension_scale if model.task.has_dimensions else None
    return described_task(
        model.task.name,
        list(model.labels) if model.task.has_categories else [],
        scale.to_dict() if scale is not None else None,
    )


def described_task(task: str, labels: list[str], dimension_scale: dict | None) -> dict:
    """What GET /v1/model says of a model's outputs, for either backend.

    Args:
        task: categorical, dimensional or multitask.
        labels: the emotion classes (empty for a model without them).
        dimension_scale: the rating scale of its dimensions, or None without them.

    Returns:
        `task`, `labels`, `dimensions` (their names, or None) and `dimension_scale`.
    """
    return {
        "task": task,
        "labels": labels,
        "dimensions": list(DIMENSIONS) if dimension_scale is not None else None,
        "dimension_scale": dimension_scale,
    }


def model_info(checkpoint: dict, model: SERModel, ckpt_path: str | Path) -> dict:
    """Describe the served model, as GET /v1/model shows it.

    Args:
        checkpoint: the loaded checkpoint (its hyper-parameters and run record).
        model: the SERModel loaded from it.
        ckpt_path: the checkpoint's path (only its name is shown).

    Returns:
        Labels, audio settings, features, network, size, training data and test scores; paths
        are reduced to file names.
    """
    from ser_lightning.checkpoint import RECORD_KEY  # torch: not for the onnx backend

    hparams = checkpoint["hyper_parameters"]
    record = checkpoint[RECORD_KEY]
    data = record.get("data") or {}
    split = record.get("split") or {}
    features = {k: v for k, v in dict(hparams.get("features") or {}).items() if not k.startswith("_")}
    # a pretrained encoder's files: their names, not this machine's paths
    for key in ("encoder", "weights"):
        if isinstance(features.get(key), str):
            features[key] = Path(features[key]).name
    return {
        "checkpoint": Path(ckpt_path).name,
        **served_task(model),
        "sample_rate": model.audio.sample_rate,
        "window_s": model.audio.duration,
        "features": {"name": _class_name(hparams.get("features")), **features},
        "network": _class_name(hparams.get("net")),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "corpus": data.get("corpus"),
        "protocol": {"split": split.get("name"), "sizes": split.get("sizes")},
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
        "test_metrics": run_test_metrics(ckpt_path),
        "ser_lightning_version": record.get("ser_lightning_version"),
        "backend": "torch",
        "model_card": card_facts(ckpt_path, list(model.labels)),
    }


def onnx_model_info(predictor: OnnxPredictor, path: str | Path) -> dict:
    """Describe an exported model served with backend=onnx, from its folder's config.json.

    The facts are the model card's (config.json's `card`, written by export from the run's
    summary); a bare .onnx file has none, and says so with nulls.

    Args:
        predictor: the OnnxPredictor serving it.
        path: the model folder or .onnx file (only its name is shown).

    Returns:
        The same keys as `model_info`.
    """
    import onnx  # the graph's stored numbers, counted once at start

    config, card = predictor.config, predictor.config.get("card")
    graph = onnx.load(str(predictor.graph), load_external_data=False)
    features = {k: v for k, v in dict(config["features"]).items() if not k.startswith("_")}
    scores = ((card or {}).get("test") or {}).get("scores") or {}
    protocol = (card or {}).get("protocol") or {}
    return {
        "checkpoint": Path(path).name,
        **described_task(predictor.task, list(predictor.labels), predictor.dimension_scale),
        "sample_rate": predictor.audio.sample_rate,
        "window_s": predictor.audio.duration,
        "features": {"name": _class_name(config["features"]), **features},
        "network": None,
        "parameters": int(sum(_size(t) for t in graph.graph.initializer)),
        "corpus": (card or {}).get("corpus"),
        "protocol": {"split": protocol.get("split"), "sizes": protocol.get("sizes")},
        "test_metrics": {"ua": scores.get("ua"), "wa": scores.get("accuracy"), "f1": scores.get("macro_f1")}
        if scores
        else None,
        "ser_lightning_version": config.get("ser_lightning_version"),
        "backend": f"onnxruntime {predictor.precision}",
        "model_card": card,
    }


def _size(tensor) -> int:
    count = 1
    for dim in tensor.dims:
        count *= int(dim)
    return count
