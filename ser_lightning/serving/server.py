"""Building the served application from the `serve` config: checkpoint, predictor, service, app."""

from __future__ import annotations

import logging
import os

from omegaconf import DictConfig

from ser_lightning.checkpoint import EncoderFiles, module_from_checkpoint, read_checkpoint
from ser_lightning.inference.model import InferenceModel
from ser_lightning.inference.predictor import Predictor
from ser_lightning.inference.timeline import TimelineSettings
from ser_lightning.serving.app import api_key_for, create_app
from ser_lightning.serving.batching import BatchingSettings
from ser_lightning.serving.model_info import model_info
from ser_lightning.serving.service import EmotionService, ServiceSettings

log = logging.getLogger(__name__)


def service_settings(cfg: DictConfig) -> ServiceSettings:
    if not cfg.max_upload_mb > 0:
        raise ValueError(f"max_upload_mb={cfg.max_upload_mb} must be a positive number of megabytes")
    max_duration_s = cfg.get("max_duration_s")
    if max_duration_s is not None and not max_duration_s > 0:
        raise ValueError(f"max_duration_s={max_duration_s} must be a positive number of seconds (or null)")
    return ServiceSettings(
        max_upload_bytes=int(cfg.max_upload_mb * 1e6),
        max_duration_s=None if max_duration_s is None else float(max_duration_s),
        hop=cfg.get("hop"),
        long_clips=cfg.get("long_clips", "windows"),
        decode_workers=int(cfg.get("decode_workers", 2)),
        upload_dir=cfg.get("upload_dir"),
        batching=BatchingSettings(**dict(cfg.batching)),
        timeline=TimelineSettings.from_config(cfg.get("timeline")),
    )


def load_service(cfg: DictConfig) -> EmotionService:
    """The model of `cfg.ckpt_path`, loaded by predict's safe loader, behind a service."""
    settings = service_settings(cfg)
    checkpoint = read_checkpoint(cfg.ckpt_path)
    module = module_from_checkpoint(
        checkpoint, InferenceModel, cfg.ckpt_path, encoder_files=EncoderFiles.of_command(cfg)
    )
    predictor = Predictor(module, device=cfg.device, batch_size=settings.batching.max_batch_windows)
    info = model_info(checkpoint, module, cfg.ckpt_path)
    del checkpoint
    log.info(
        "serving %s (%s, %d parameters) on %s; batching %s",
        cfg.ckpt_path,
        info["network"],
        info["parameters"],
        predictor.device,
        "on" if settings.batching.enabled else "off",
    )
    return EmotionService(predictor, info, settings)


def build_app(cfg: DictConfig, environ=os.environ):
    """The application `cfg` describes; refuses a non-loopback host without SER_API_KEY."""
    api_key = api_key_for(str(cfg.host), environ)
    return create_app(load_service(cfg), api_key=api_key, web=bool(cfg.get("web", True)))
