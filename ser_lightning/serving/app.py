"""The ASGI application: the JSON API (FastAPI) and the web page (Gradio) in one app.

- POST /v1/predict: a recording as the multipart field `file` or as the raw body; `timeline=true`
  adds the emotion of each speech segment over time.
- GET /v1/model: what the model is (labels, audio, features, network, training data, test scores).
- GET /health: liveness and the batcher's counts.
- GET /docs, /openapi.json: the API described by FastAPI; GET /: the web page.

Every request first passes the guards of `serving.guards`: a `Host` that is not this server's
gets 400 (no DNS rebinding), pages of other sites get no CORS answers and cannot post, bodies
over the size limit get 413 before they are read whole and stalled bodies 408. When an API key is
set (SER_API_KEY, which the server requires when it listens beyond this machine) every /v1
request must carry it, as `X-API-Key: KEY` or `Authorization: Bearer KEY`, compared in constant
time before the body is read; the page asks for it as the password of user `ser`.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Query, Request, UploadFile
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from ser_lightning import __version__
from ser_lightning.serving.guards import ApiKeyGuard, BodyGuard, CrossOriginPolicy, host_names
from ser_lightning.serving.service import EmotionService, RequestError
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

API_KEY_ENV = "SER_API_KEY"
# A key shorter than this is too easy to guess for a server others can reach.
MIN_API_KEY_LENGTH = 16
NO_FILE = (
    "no file: send the recording as the multipart field `file` (curl -F file=@clip.wav URL) or as the "
    "raw request body (curl --data-binary @clip.wav -H 'Content-Type: audio/wav' URL)"
)


def is_loopback(host: str) -> bool:
    """Tell whether `host` is reachable from this machine only.

    Returns:
        True for `localhost` and loopback IP addresses; False for anything else, names included.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_for(host: str, environ: Mapping[str, str]) -> str | None:
    """Choose the key requests must carry: SER_API_KEY when set (required when `host` is not loopback).

    Args:
        host: the address the server listens on.
        environ: the environment to read SER_API_KEY from (e.g. `os.environ`).

    Returns:
        The key, or None when none is set and the host is loopback.

    Raises:
        InvalidSetting: when a non-loopback host has no key, or the key is shorter than
            MIN_API_KEY_LENGTH characters.
    """
    key = environ.get(API_KEY_ENV) or None
    if key is None and not is_loopback(host):
        raise InvalidSetting(
            f"host={host} lets other machines reach the server, so requests need an API key: set "
            f"{API_KEY_ENV} to a long random secret (e.g. {API_KEY_ENV}=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')), or serve on host=127.0.0.1"
        )
    if key is not None and len(key) < MIN_API_KEY_LENGTH:
        raise InvalidSetting(
            f"{API_KEY_ENV} is {len(key)} characters long; use at least {MIN_API_KEY_LENGTH}"
        )
    return key


@dataclass(frozen=True)
class AccessSettings:
    """Who may reach the application.

    That is the key, the host names it answers to, the origins whose pages may call it, and how
    long a request body may stall.
    """

    api_key: str | None = None
    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    body_timeout_s: float | None = 30.0


def create_app(service: EmotionService, access: AccessSettings | None = None, web: bool = True) -> FastAPI:
    """Build the application serving `service` behind the guards of `access`.

    Args:
        service: the model behind the API; started and stopped with the application.
        access: the key, host names, origins and body timeout; loopback-only defaults when None.
        web: whether to mount the Gradio page at `/`.

    Returns:
        The FastAPI application: /health, /v1/model, /v1/predict and, with `web`, the page.
    """
    access = access or AccessSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()
            cache = getattr(app.state, "page_cache", None)
            if cache is not None:
                shutil.rmtree(cache, ignore_errors=True)

    app = FastAPI(
        title="ser_lightning",
        version=__version__,
        description="Speech emotion recognition: the emotion in a recording, and its timeline over time.",
        lifespan=lifespan,
    )
    app.state.service = service
    # added innermost first: a request meets the host check, then the origin policy, the key and the body limits
    app.add_middleware(
        BodyGuard, max_bytes=service.settings.max_upload_bytes, idle_timeout_s=access.body_timeout_s
    )
    app.add_middleware(ApiKeyGuard, api_key=access.api_key)
    app.add_middleware(CrossOriginPolicy, allowed_origins=access.cors_origins)
    app.add_middleware(
        TrustedHostMiddleware, allowed_hosts=host_names(access.bind_host, access.allowed_hosts)
    )

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        if any(tuple(e.get("loc", ()))[-1:] == ("file",) for e in err.errors()):
            # e.g. a path sent as text: the server reads uploaded bytes only, never a path it is sent
            return JSONResponse(
                {"detail": f"the field `file` holds text, not an uploaded file; {NO_FILE}"}, status_code=422
            )
        return await request_validation_exception_handler(request, err)

    @app.get("/health", tags=["service"])
    async def health() -> dict:
        """Whether the server is up, the model it serves, and the batcher's counts.

        Returns:
            `status` ("ok"), `checkpoint` (the served file's name) and `batching` (the counts).
        """
        return {
            "status": "ok",
            "checkpoint": service.info.get("checkpoint"),
            "batching": service.batcher.stats.as_dict(),
        }

    api = APIRouter(prefix="/v1", tags=["model"])  # ApiKeyGuard checks the key before the body

    @api.get("/model")
    async def model() -> dict:
        """Labels, sample rate, features, network, parameters, training corpus and protocol, test scores.

        Returns:
            The model's description (`serving.model_info.model_info`).
        """
        return service.info

    @api.post(
        "/predict",
        openapi_extra={
            "requestBody": {
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {"file": {"type": "string", "format": "binary"}},
                            "required": ["file"],
                        }
                    },
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                }
            }
        },
    )
    async def predict(
        request: Request,
        timeline: bool = Query(False, description="also return the emotion of each speech segment over time"),
        file: Annotated[
            UploadFile | None, File(description="the recording: wav, flac, ogg, mp3, mp4, mkv, ...")
        ] = None,
    ) -> dict:
        """The emotion of one recording, sent as the multipart field `file` or as the raw body.

        Returns:
            The top emotion, its confidence and a probability per emotion; with `timeline=true`,
            also its speech segments with start, end, emotion and probabilities.

        Raises:
            RequestError: 422 when the request holds no recording, and the refusals of the
                service (415, 422) for an upload it cannot score.
        """
        if file is not None:
            result, _ = await service.analyse_upload(file.file, file.filename, timeline=timeline)
            return result
        if request.headers.get("content-type", "").startswith(
            ("multipart/form-data", "application/x-www-form-urlencoded")
        ):
            raise RequestError(422, f"the form has no field `file`; {NO_FILE}")
        body = await request.body()
        if not body:
            raise RequestError(422, NO_FILE)
        result, _ = await service.analyse_upload(body, None, timeline=timeline)
        return result

    app.include_router(api)
    if web:
        from ser_lightning.serving.web import mount_page

        mount_page(app, service, access.api_key)
    return app
