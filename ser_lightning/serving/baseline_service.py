"""Serving a classical baseline (`serve ckpt_path=<run>/model.skops`) with the service networks use.

The baseline is loaded as a `baselines.scoring.BaselineScorer`, which has the scoring members of
a network, so one `Predictor` and one `EmotionService` (decoding, windows, batching, timeline)
serve either; only GET /v1/model's description is the baseline's own (`baseline_info`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from fastapi import FastAPI
from omegaconf import DictConfig

from ser_lightning.baselines.prediction import BaselineModel
from ser_lightning.baselines.scoring import BaselineScorer, baseline_info, baseline_model_file
from ser_lightning.inference.predictor import Predictor
from ser_lightning.serving.app import create_app
from ser_lightning.serving.server import access_settings, build_app, service_settings
from ser_lightning.serving.service import EmotionService

log = logging.getLogger(__name__)


def load_baseline_service(cfg: DictConfig) -> EmotionService:
    """Load the baseline model `cfg.ckpt_path` names and put it behind a service.

    Args:
        cfg: the `serve` config, whose `ckpt_path` is a `model.skops` or a baseline run folder.

    Returns:
        The service (not yet started).
    """
    settings = service_settings(cfg)
    scorer = BaselineScorer(BaselineModel.load(baseline_model_file(cfg.ckpt_path) or cfg.ckpt_path))
    # scikit-learn runs on the CPU whatever `device` says
    predictor = Predictor(scorer, device="cpu", batch_size=settings.batching.max_batch_windows)
    info = baseline_info(scorer, cfg.ckpt_path)
    log.info(
        "serving baseline %s (%s, %s features)", cfg.ckpt_path, info["network"], info["features"]["name"]
    )
    return EmotionService(predictor, info, settings)


def build_any_app(cfg: DictConfig, environ: Mapping[str, str] = os.environ) -> FastAPI:
    """Build the application for `cfg.ckpt_path`: a baseline model, else a network's checkpoint.

    Args:
        cfg: the `serve` config.
        environ: the environment holding SER_API_KEY.

    Returns:
        The application, with its service loaded (`server.build_app` for a network).
    """
    if baseline_model_file(cfg.ckpt_path) is None:
        return build_app(cfg, environ)
    return create_app(
        load_baseline_service(cfg), access_settings(cfg, environ), web=bool(cfg.get("web", True))
    )
