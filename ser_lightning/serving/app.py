"""The ASGI application: the JSON API (FastAPI) and the web page (Gradio) in one app.

- POST /v1/predict: a recording as the multipart field `file` or as the raw body; `timeline=true`
  adds the emotion of each speech segment over time.
- GET /v1/model: what the model is (labels, audio, features, network, training data, test scores).
- GET /health: liveness and the batcher's counts.
- GET /docs, /openapi.json: the API described by FastAPI; GET /: the web page.

Bodies over the size limit are refused with 413 before they are read whole (from the declared
length, or as soon as the bytes received pass it). When an API key is set (SER_API_KEY, which
the server requires when it listens beyond this machine) every /v1 request must carry it, as
`X-API-Key: KEY` or `Authorization: Bearer KEY`, compared in constant time; the page asks for
it as the password of user `ser`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import shutil
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse

from ser_lightning import __version__
from ser_lightning.serving.service import EmotionService, RequestError

log = logging.getLogger(__name__)

API_KEY_ENV = "SER_API_KEY"
# A key shorter than this is too easy to guess for a server others can reach.
MIN_API_KEY_LENGTH = 16
NO_FILE = (
    "no file: send the recording as the multipart field `file` (curl -F file=@clip.wav URL) or as the "
    "raw request body (curl --data-binary @clip.wav -H 'Content-Type: audio/wav' URL)"
)


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int):
        super().__init__(
            413,
            f"the request body is larger than this server's limit of {max_bytes / 1e6:g} MB "
            "(max_upload_mb); send a shorter recording or a compressed format (flac, ogg, mp3)",
        )


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_key_for(host: str, environ) -> str | None:
    """The key requests must carry: SER_API_KEY when set (required when `host` is not loopback)."""
    key = environ.get(API_KEY_ENV) or None
    if key is None and not is_loopback(host):
        raise ValueError(
            f"host={host} lets other machines reach the server, so requests need an API key: set "
            f"{API_KEY_ENV} to a long random secret (e.g. {API_KEY_ENV}=$(python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))')), or serve on host=127.0.0.1"
        )
    if key is not None and len(key) < MIN_API_KEY_LENGTH:
        raise ValueError(f"{API_KEY_ENV} is {len(key)} characters long; use at least {MIN_API_KEY_LENGTH}")
    return key


class BodyLimit:
    """ASGI middleware: 413 for a body over `max_bytes`, by its declared length or as it arrives."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = BodyTooLarge(self.max_bytes)
            response = JSONResponse(
                {"detail": error.detail}, status_code=413, headers={"Connection": "close"}
            )
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return await self.app(scope, limited_receive, send)


def key_check(api_key: str | None):
    """A dependency refusing requests without the key (constant-time comparison)."""
    expected = api_key.encode() if api_key else None

    async def check(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token if scheme.lower() == "bearer" else ""
        if not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(
                401,
                "this server needs its API key: send it as the header `X-API-Key: KEY` or `Authorization: Bearer KEY`",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check


def create_app(service: EmotionService, api_key: str | None = None, web: bool = True) -> FastAPI:
    """The application serving `service`; `web` mounts the Gradio page at `/`."""

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
    app.add_middleware(BodyLimit, max_bytes=service.settings.max_upload_bytes)

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
        """Whether the server is up, the model it serves, and the batcher's counts."""
        return {
            "status": "ok",
            "checkpoint": service.info.get("checkpoint"),
            "batching": service.batcher.stats.as_dict(),
        }

    api = APIRouter(prefix="/v1", tags=["model"], dependencies=[Depends(key_check(api_key))])

    @api.get("/model")
    async def model() -> dict:
        """Labels, sample rate, features, network, parameters, training corpus and protocol, test scores."""
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
        """The emotion of one recording (multipart field `file`, or the raw body): the top emotion,
        its confidence and a probability per emotion; with `timeline=true`, also its speech
        segments with start, end, emotion and probabilities."""
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

        mount_page(app, service, api_key)
    return app
