"""Serve a trained model over HTTP: `python -m ser_lightning.serve ckpt_path=best.ckpt port=8000`.

`ckpt_path` may also be a classical baseline's `model.skops` (or its run folder), or a model
folder written by `python -m ser_lightning.export`, served with onnxruntime and without torch
(`backend=auto|onnx`, `precision=fp32|int8`).

The JSON API (POST /v1/predict, GET /v1/model, GET /health, docs at /docs, its contract at
/openapi.json: serving.schemas) and the web page (/)
in one process, on 127.0.0.1 unless `host=` says otherwise (then SER_API_KEY must be set).
See ser_lightning.serving.
"""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from ser_lightning.utils.config import CONFIG_DIR
from ser_lightning.utils.errors import exits_on_user_mistake

log = logging.getLogger("ser_lightning.serve")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="serve")
@exits_on_user_mistake
def main(cfg: DictConfig) -> None:
    """Build the app of the serve config and run it under uvicorn until stopped."""
    from ser_lightning.inference.onnx_backend import uses_onnx
    from ser_lightning.serving.server import build_app, uvicorn_server

    OmegaConf.resolve(cfg.paths)
    if uses_onnx(cfg.ckpt_path, cfg.get("backend", "auto")):  # an exported model folder: no torch
        app = build_app(cfg)
    else:
        from ser_lightning.serving.baseline_service import build_any_app

        app = build_any_app(cfg)  # a network's checkpoint or a baseline's model.skops
    where = f"http://{'[' + cfg.host + ']' if ':' in str(cfg.host) else cfg.host}:{cfg.port}"
    log.info(
        "web page %s/ , API %s/v1/predict , docs %s/docs , contract %s/openapi.json (Ctrl+C stops)",
        where,
        where,
        where,
        where,
    )
    uvicorn_server(cfg, app).run()
    log.info("server stopped")


if __name__ == "__main__":
    main()
