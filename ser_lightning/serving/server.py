"""Building the served application from the `serve` config.

It builds the checkpoint, predictor, service, app, and the uvicorn server that runs it with the
config's limits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fastapi import FastAPI
from omegaconf import DictConfig

from ser_lightning.inference.onnx_backend import OnnxPredictor, uses_onnx
from ser_lightning.inference.timeline import TimelineSettings
from ser_lightning.serving.app import AccessSettings, api_key_for, create_app
from ser_lightning.serving.batching import BatchingSettings
from ser_lightning.serving.model_info import model_info, onnx_model_info
from ser_lightning.serving.service import EmotionService, ServiceSettings
from ser_lightning.serving.streaming import StreamSettings
from ser_lightning.utils.errors import InvalidSetting

if TYPE_CHECKING:  # annotations only: uvicorn is imported where the server is made
    import uvicorn

log = logging.getLogger(__name__)


def service_settings(cfg: DictConfig) -> ServiceSettings:
    """Read the service's limits and options from the `serve` config.

    Args:
        cfg: the `serve` config (max_upload_mb, max_duration_s, max_decoded_samples, hop,
            long_clips, decode_workers, upload_dir, batching, timeline).

    Returns:
        The service settings.

    Raises:
        InvalidSetting: when max_upload_mb, max_duration_s or max_decoded_samples is not positive.
    """
    if not cfg.max_upload_mb > 0:
        raise InvalidSetting(f"max_upload_mb={cfg.max_upload_mb} must be a positive number of megabytes")
    max_duration_s = cfg.get("max_duration_s")
    if max_duration_s is not None and not max_duration_s > 0:
        raise InvalidSetting(
            f"max_duration_s={max_duration_s} must be a positive number of seconds (or null)"
        )
    max_samples = cfg.get("max_decoded_samples")
    if max_samples is not None and not max_samples > 0:
        raise InvalidSetting(
            f"max_decoded_samples={max_samples} must be a positive number of samples (or null)"
        )
    return ServiceSettings(
        max_upload_bytes=int(cfg.max_upload_mb * 1e6),
        max_duration_s=None if max_duration_s is None else float(max_duration_s),
        max_decoded_samples=None if max_samples is None else int(max_samples),
        hop=cfg.get("hop"),
        long_clips=cfg.get("long_clips", "windows"),
        decode_workers=int(cfg.get("decode_workers", 2)),
        upload_dir=cfg.get("upload_dir"),
        batching=BatchingSettings(**dict(cfg.batching)),
        timeline=TimelineSettings.from_config(cfg.get("timeline")),
    )


def load_service(cfg: DictConfig) -> EmotionService:
    """Load the model of `cfg.ckpt_path` with predict's safe loader and put it behind a service.

    Args:
        cfg: the `serve` config.

    Returns:
        The service (not yet started) with the model's predictor and description.
    """
    settings = service_settings(cfg)
    # several model threads share the cores: each call then runs on its share of them
    call_threads = per_call_threads(settings.batching.model_threads)
    if uses_onnx(cfg.ckpt_path, cfg.get("backend", "auto")):  # an exported model: onnxruntime, no torch
        predictor = OnnxPredictor(
            cfg.ckpt_path,
            cfg.get("precision", "fp32"),
            batch_size=settings.batching.max_batch_windows,
            threads=call_threads,
        )
        log.info("serving %s on %s", cfg.ckpt_path, predictor.device)
        return EmotionService(predictor, onnx_model_info(predictor, cfg.ckpt_path), settings)
    from ser_lightning.checkpoint import read_checkpoint
    from ser_lightning.checkpoint_encoder import EncoderFiles
    from ser_lightning.inference.predictor import Predictor
    from ser_lightning.model import SERModel

    checkpoint = read_checkpoint(cfg.ckpt_path)
    model = SERModel.from_checkpoint(checkpoint, cfg.ckpt_path, encoder_files=EncoderFiles.of_command(cfg))
    predictor = Predictor(model, device=cfg.device, batch_size=settings.batching.max_batch_windows)
    if call_threads is not None and predictor.device.type == "cpu":
        import torch

        torch.set_num_threads(call_threads)
    info = model_info(checkpoint, model, cfg.ckpt_path)
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


def per_call_threads(model_threads: int, cores: int | None = None) -> int | None:
    """The intra-op threads of each model call when `model_threads` calls run at once.

    Args:
        model_threads: `batching.model_threads`.
        cores: the CPU cores to share; this process's when None.

    Returns:
        None for one model thread (the runtime's own default), else the cores divided among the
        model threads, at least 1, so that concurrent calls do not oversubscribe the CPU.
    """
    if model_threads <= 1:
        return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // model_threads)


def access_settings(cfg: DictConfig, environ: Mapping[str, str] = os.environ) -> AccessSettings:
    """Decide who may reach the server `cfg` describes.

    Args:
        cfg: the `serve` config (host, allowed_hosts, cors_origins, limits.body_timeout_s,
            limits.max_pending_requests, limits.retry_after_s).
        environ: the environment holding SER_API_KEY.

    Returns:
        The access settings.

    Raises:
        InvalidSetting: when limits.body_timeout_s is not positive, or (from `api_key_for`)
            a non-loopback host has no SER_API_KEY or too short a one.
    """
    body_timeout_s = cfg.limits.body_timeout_s
    if body_timeout_s is not None and not body_timeout_s > 0:
        raise InvalidSetting(
            f"limits.body_timeout_s={body_timeout_s} must be a positive number of seconds (or null)"
        )
    return AccessSettings(
        api_key=api_key_for(str(cfg.host), environ),
        bind_host=str(cfg.host),
        allowed_hosts=tuple(str(h) for h in cfg.allowed_hosts or ()),
        cors_origins=tuple(str(o) for o in cfg.cors_origins or ()),
        body_timeout_s=None if body_timeout_s is None else float(body_timeout_s),
        max_pending_requests=int(cfg.limits.get("max_pending_requests", 32)),
        retry_after_s=int(cfg.limits.get("retry_after_s", 1)),
    )


def build_app(cfg: DictConfig, environ: Mapping[str, str] = os.environ) -> FastAPI:
    """Build the application `cfg` describes; refuses a non-loopback host without SER_API_KEY.

    Args:
        cfg: the `serve` config.
        environ: the environment holding SER_API_KEY.

    Returns:
        The application, with its service loaded.
    """
    access = access_settings(cfg, environ)
    stream = StreamSettings.from_config(cfg.get("stream"))
    return create_app(load_service(cfg), access, web=bool(cfg.get("web", True)), stream=stream)


def uvicorn_server(cfg: DictConfig, app: FastAPI) -> uvicorn.Server:
    """Make the uvicorn server for `app` on `cfg.host`:`cfg.port`, with the config's connection limits.

    The limits are a deadline for request headers and at most `limits.max_connections`
    connections (503 above).

    Args:
        cfg: the `serve` config (host, port, log_level, access_log, limits).
        app: the application to serve.

    Returns:
        The uvicorn server, not yet running.

    Raises:
        InvalidSetting: when limits.max_connections is below 1 (or limits.header_timeout_s is
            not positive).
    """
    import uvicorn

    from ser_lightning.serving.http_protocol import protocol_with_header_timeout

    limits = cfg.limits
    if not limits.max_connections >= 1:
        raise InvalidSetting(f"limits.max_connections={limits.max_connections} must be at least 1")
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=str(cfg.host),
            port=int(cfg.port),
            log_level=str(cfg.log_level),
            access_log=bool(cfg.access_log),
            http=protocol_with_header_timeout(
                float(limits.header_timeout_s), retry_after_s=int(limits.get("retry_after_s", 1))
            ),
            limit_concurrency=int(limits.max_connections),
            timeout_keep_alive=int(limits.keep_alive_s),
        )
    )
