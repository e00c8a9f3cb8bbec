"""The ASGI application: the JSON API (FastAPI) and the web page (Gradio) in one app.

- POST /v1/predict: a recording as the multipart field `file` or as the raw body
  (`serving.uploads`); `timeline=true` adds the emotion of each speech segment over time.
- GET /v1/model: what the model is (labels, audio, features, network, training data, test scores).
- GET /health: liveness and the batcher's counts.
- WS /v1/stream: live audio in, emotion events out (`serving.streaming_session`); POST
  /v1/stream/tickets: a single-use ticket to open it from a browser page (`serving.stream_tickets`).
- GET /docs, /openapi.json: the API described by FastAPI; GET /: the web page.

Every request first passes the guards of `serving.guards`: a `Host` that is not this server's
gets 400 (no DNS rebinding), pages of other sites get no CORS answers and cannot post, bodies
over the size limit get 413 before they are read whole and stalled bodies 408. When an API key is
set (SER_API_KEY, which the server requires when it listens beyond this machine) every /v1
request must carry it, as `X-API-Key: KEY` or `Authorization: Bearer KEY`, compared in constant
time before the body is read; the page asks for it as the password of user `ser`.

The contract is exact: every request and answer body is a model of `serving.schemas`, every
error an RFC 9457 problem (`serving.problems`) declared on the endpoints that can answer it,
a method a path does not take gets 405 with `Allow`, and at most `max_pending_requests`
predictions are queued (`serving.pending`; more get 503 with `Retry-After`).
`tests/test_api_contract.py` runs the schemathesis fuzzer against `/openapi.json` with every check.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Query, Request, WebSocket
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.datastructures import Headers
from starlette.routing import Route

from ser_lightning import __version__
from ser_lightning.serving.guards import (
    API_PREFIX,
    ApiKeyGuard,
    BodyGuard,
    CrossOriginPolicy,
    MethodGuard,
    TrustedHosts,
    host_names,
)
from ser_lightning.serving.pending import PendingRequestLimit, PendingRequests
from ser_lightning.serving.problems import (
    add_problem_schemas,
    install_problem_handlers,
    problem_response,
    problem_responses,
)
from ser_lightning.serving.schemas import (
    RAW_BODY_MEDIA_TYPES,
    Health,
    ModelInfo,
    Prediction,
    PredictUpload,
    StreamTicket,
)
from ser_lightning.serving.service import EmotionService, RequestError
from ser_lightning.serving.stream_tickets import StreamTickets
from ser_lightning.serving.streaming import StreamSettings
from ser_lightning.serving.streaming_session import StreamHub
from ser_lightning.serving.uploads import read_recording
from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)

API_KEY_ENV = "SER_API_KEY"
# A key shorter than this is too easy to guess for a server others can reach.
MIN_API_KEY_LENGTH = 16
# Error answers any request can get: a wrong Host, a body over the limit (its declared length),
# a wrong method, too many connections, a fault.
COMMON_PROBLEMS = (400, 405, 413, 500, 503)
STREAM_PATH = f"{API_PREFIX}/stream"
TICKETS_PATH = f"{API_PREFIX}/stream/tickets"


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
    """Who may reach the application, and how much of it.

    That is the key, the host names it answers to, the origins whose pages may call it, how
    long a request body may stall, and how many predictions may be queued at once (more get 503
    with `Retry-After: retry_after_s`).
    """

    api_key: str | None = None
    bind_host: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    body_timeout_s: float | None = 30.0
    max_pending_requests: int = 32
    retry_after_s: int = 1


def create_app(
    service: EmotionService,
    access: AccessSettings | None = None,
    web: bool = True,
    stream: StreamSettings | None = None,
) -> FastAPI:
    """Build the application serving `service` behind the guards of `access`.

    Args:
        service: the model behind the API; started and stopped with the application.
        access: the key, host names, origins, body timeout and queue bound; loopback-only defaults when None.
        web: whether to mount the Gradio page at `/`.
        stream: the limits of WS /v1/stream (`serving.streaming_session`); the defaults when None.

    Returns:
        The FastAPI application: /health, /v1/model, /v1/predict and, with `web`, the page.
    """
    access = access or AccessSettings()
    queue = PendingRequests(access.max_pending_requests, access.retry_after_s)
    tickets = StreamTickets()
    streams = StreamHub(service, stream or StreamSettings(), access.cors_origins, access.api_key, tickets)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()
            streams.close()
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
    app.state.queue = queue
    app.state.streams = streams
    app.state.stream_tickets = tickets
    app.state.page_session = None  # set by the web page (`web.mount_page`): its login session check
    # added innermost first: a request meets the host check, then the origin policy, the key,
    # the queue bound, the body limits and the method check
    app.add_middleware(MethodGuard, routes=lambda: route_methods(app), owned_prefixes=(API_PREFIX,))
    app.add_middleware(
        BodyGuard, max_bytes=service.settings.max_upload_bytes, idle_timeout_s=access.body_timeout_s
    )
    app.add_middleware(PendingRequestLimit, queue=queue)
    app.add_middleware(
        ApiKeyGuard,
        api_key=access.api_key,
        own_check_websockets=(STREAM_PATH,),  # the key or a ticket; refused with a close code
        session_paths=(TICKETS_PATH,),  # the web page asks for tickets with its login session
        page_session=lambda headers: page_session(app, headers),
    )
    app.add_middleware(CrossOriginPolicy, allowed_origins=access.cors_origins)
    app.add_middleware(TrustedHosts, allowed_hosts=host_names(access.bind_host, access.allowed_hosts))
    install_problem_handlers(app)

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError) -> JSONResponse:
        return problem_response(err.status, err.message, request.url.path)

    keyed = (401,) if access.api_key else ()

    @app.get(
        "/health", tags=["service"], response_model=Health, responses=problem_responses(*COMMON_PROBLEMS)
    )
    async def health() -> dict:
        """Whether the server is up, the model it serves, the batcher's counts and the queue's.

        Returns:
            `status` ("ok"), `checkpoint` (the served file's name), `batching` (the counts) and
            `queue` (requests pending now, the bound, requests refused).
        """
        return {
            "status": "ok",
            "checkpoint": service.info.get("checkpoint"),
            "batching": service.batcher.stats.as_dict(),
            "queue": queue.as_dict(),
        }

    api = APIRouter(prefix="/v1", tags=["model"])  # ApiKeyGuard checks the key before the body

    @api.get("/model", response_model=ModelInfo, responses=problem_responses(*keyed, *COMMON_PROBLEMS))
    async def model() -> dict:
        """Labels, sample rate, features, network, parameters, training corpus and protocol, test scores.

        Returns:
            The model's description (`serving.model_info.model_info`).
        """
        return service.info

    @api.post(
        "/predict",
        response_model=Prediction,
        response_model_exclude_none=True,
        responses=problem_responses(*keyed, 400, 403, 405, 408, 413, 415, 422, 500, 503),
        openapi_extra={"requestBody": request_body()},
    )
    async def predict(
        request: Request,
        timeline: bool = Query(False, description="also return the emotion of each speech segment over time"),
    ) -> dict:
        """The emotion of one recording, sent as the multipart field `file` or as the raw body.

        Returns:
            The top emotion, its confidence and a probability per emotion; with `timeline=true`,
            also its speech segments with start, end, emotion and probabilities.

        Raises:
            RequestError: the refusals of the service (415, 422) for an upload it cannot score
                (`read_recording` refuses a request that holds no recording: 415, 422, 400).
        """
        recording = await read_recording(request)
        try:
            result, _ = await service.analyse_upload(recording.content, recording.filename, timeline=timeline)
        finally:
            await recording.close()
        return result

    @api.post(
        "/stream/tickets",
        response_model=StreamTicket,
        responses=problem_responses(*keyed, 403, *COMMON_PROBLEMS),
        tags=["stream"],
    )
    async def stream_ticket() -> dict:
        """A single-use ticket that opens one WS /v1/stream within 30 s, for a client that cannot send the key.

        A browser's WebSocket cannot set the `X-API-Key` header: a page (this server's `/live`,
        through its login session, or a page of your own whose back end holds the key) opens
        `/v1/stream?ticket=TICKET` instead. Programs can send the key with the handshake.

        Returns:
            The ticket and the seconds it stays valid.
        """
        return {"ticket": tickets.issue(), "expires_in_s": tickets.ttl_s}

    @app.websocket(STREAM_PATH)
    async def stream_route(websocket: WebSocket) -> None:
        # live audio in, emotion events out: the messages are serving.streaming_events' models
        await streams.serve(websocket)

    app.include_router(api)
    app.openapi = lambda: contract(app, keyed=bool(access.api_key))  # type: ignore[method-assign]
    if web:
        from ser_lightning.serving.streaming_page import live_page
        from ser_lightning.serving.web import mount_page

        @app.get("/live", include_in_schema=False, response_class=HTMLResponse)
        async def live(request: Request):
            # the live-microphone page: the emotion as the person speaks, over /v1/stream; behind
            # the page's login on a server with a key (its stream tickets need that session)
            if access.api_key and not page_session(app, request.headers):
                return RedirectResponse("./", status_code=303)  # the main page asks to log in
            return live_page(list(service.labels))

        mount_page(app, service, access.api_key)
    return app


def page_session(app: FastAPI, headers: Headers) -> bool:
    """Tell whether a request carries a login session of the web page mounted in `app`.

    Args:
        app: the application.
        headers: the request's headers (its cookies).

    Returns:
        False without a mounted page, or without a session of it.
    """
    check = getattr(app.state, "page_session", None)
    return check is not None and check(headers)


def route_methods(app: FastAPI) -> dict[str, set[str]]:
    """List the methods each path of the application takes (the page mounted at `/` aside).

    Args:
        app: the application.

    Returns:
        The paths of its OpenAPI document and its own plain routes (/docs, /openapi.json, ...),
        each with its methods.
    """
    table = {path: {m.upper() for m in operations} for path, operations in app.openapi()["paths"].items()}
    for route in app.router.routes:
        if isinstance(route, Route) and route.methods:
            table.setdefault(route.path, set()).update(route.methods)
    return table


def request_body() -> dict:
    """Describe POST /v1/predict's body: the `PredictUpload` form, or the recording's bytes as the raw body.

    Returns:
        The OpenAPI `requestBody` object.
    """
    raw = {"schema": {"type": "string", "format": "binary"}}
    return {
        "required": True,
        "description": "the recording, as the multipart field `file` or as the raw body",
        "content": {
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/PredictUpload"}},
            **{media: raw for media in RAW_BODY_MEDIA_TYPES},
        },
    }


def contract(app: FastAPI, keyed: bool = False) -> dict:
    """Make the application's OpenAPI document (once): FastAPI's, with the request and problem schemas.

    Args:
        app: the application.
        keyed: whether /v1 requests need the API key (then declared as the operations' security).

    Returns:
        The document `/openapi.json` serves.
    """
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        add_problem_schemas(spec)
        spec["components"]["schemas"]["PredictUpload"] = PredictUpload.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        if keyed:
            spec["components"]["securitySchemes"] = {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            }
            for path, operations in spec["paths"].items():
                if path.startswith("/v1/"):
                    for operation in operations.values():
                        operation["security"] = [{"ApiKey": []}, {"Bearer": []}]
        app.openapi_schema = spec
    return app.openapi_schema
