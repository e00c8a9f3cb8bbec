"""RFC 9457 problem details: the one body of every 4xx and 5xx answer of the server.

Each error answer is `application/problem+json` with `type` (about:blank: the status says
what kind of problem it is), `title` (the status phrase), `status`, `detail` (what is wrong
with this request and how to fix it) and `instance` (the request's path); a 422 adds `errors`,
one entry per field that does not match the schema. The guards (`serving.guards`), the
connection limit (`serving.http_protocol`), the routes and FastAPI's own errors (unknown path,
invalid query) all answer through `problem_response`, and every endpoint declares the statuses
it can answer with `problem_responses` in its OpenAPI entry.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException

from ser_lightning.serving.schemas import PROBLEM_MEDIA_TYPE, PROBLEM_MODELS, FieldError

log = logging.getLogger(__name__)

# What each status means on this server: the descriptions of the OpenAPI responses.
STATUS_MEANINGS = {
    400: "the Host header is not one of this server's names (allowed_hosts), or the multipart body is malformed",
    401: "the API key is missing or wrong: send it as `X-API-Key: KEY` or `Authorization: Bearer KEY`",
    403: "a page of another origin sent it (only cors_origins may call the API from a browser)",
    405: "the path does not take this method; the `Allow` header lists the methods it takes",
    408: "the request body stopped arriving for limits.body_timeout_s",
    413: "the request body is larger than max_upload_mb",
    415: (
        "the Content-Type is not multipart/form-data, application/octet-stream, audio/* or video/*, "
        "or the upload is a playlist or file list, not a recording"
    ),
    422: (
        "the request does not match the schema (`errors` names each field), or the recording cannot be "
        "scored: not decodable audio, empty, silent, or longer than max_duration_s"
    ),
    500: "a fault of the server (its log has the details)",
    503: (
        "the server is busy: limits.max_pending_requests requests are already queued, or "
        "limits.max_connections connections are open; retry after `Retry-After` seconds"
    ),
}
_HEADERS = {
    401: {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}, "required": True}},
    405: {
        "Allow": {
            "description": "the methods the path takes, e.g. 'POST' or 'GET, HEAD'",
            "schema": {"type": "string"},
            "required": True,
        }
    },
    503: {
        "Retry-After": {
            "description": "seconds to wait before trying again",
            "schema": {"type": "integer", "minimum": 1},
            "required": True,
        }
    },
}


def title(status: int) -> str:
    """Name an HTTP status as problem details' `title` does.

    Args:
        status: the HTTP status code.

    Returns:
        Its standard phrase, e.g. "Payload Too Large"; "Error" for a code Python does not name.
    """
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(status: int, detail: str, instance: str, errors: list[dict] | None = None) -> dict:
    """Make the problem details of one error answer.

    Args:
        status: the HTTP status code.
        detail: what is wrong with the request and how to fix it.
        instance: the request's path.
        errors: for a 422, the fields that do not match (`FieldError` values).

    Returns:
        `type`, `title`, `status`, `detail`, `instance`, and for a 422 (or when given) `errors`.
    """
    body = {
        "type": "about:blank",
        "title": title(status),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors is not None or status == 422:  # a 422 always lists its fields (none: the recording itself)
        body["errors"] = errors or []
    return body


def problem_response(
    status: int, detail: str, instance: str, headers: dict | None = None, errors: list[dict] | None = None
) -> JSONResponse:
    """Answer with problem details (`application/problem+json`).

    Args:
        status: the HTTP status code (4xx or 5xx).
        detail: what is wrong with the request and how to fix it.
        instance: the request's path.
        headers: headers of the answer (`Allow`, `Retry-After`, `Connection`, ...).
        errors: for a 422, one entry per field that does not match.

    Returns:
        The response (also an ASGI application, as the guards send it).
    """
    return JSONResponse(
        problem_body(status, detail, instance, errors),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def field_errors(err: RequestValidationError) -> list[dict]:
    """Turn FastAPI's validation errors into the `errors` of a 422.

    Args:
        err: the error FastAPI raised for a request that does not match the schema.

    Returns:
        One `FieldError` value per problem: where, what and its code.
    """
    return [
        FieldError(
            location=list(e.get("loc", ())), detail=str(e.get("msg", "")), type=str(e.get("type", ""))
        ).model_dump()
        for e in err.errors()
    ]


def install_problem_handlers(app: FastAPI) -> None:
    """Make HTTP errors, validation errors and unexpected failures of `app` answer with problem details.

    Args:
        app: the application.
    """

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        detail = err.detail if isinstance(err.detail, str) and err.detail != title(err.status_code) else None
        if detail is None:
            detail = (
                f"{request.url.path} is not a path of this server"
                if err.status_code == 404
                else title(err.status_code)
            )
        return problem_response(err.status_code, detail, request.url.path, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        errors = field_errors(err)
        each = "; ".join(f"{'.'.join(str(p) for p in e['location'])}: {e['detail']}" for e in errors)
        return problem_response(
            422,
            f"the request does not match the API's schema: {each}",
            request.url.path,
            errors=errors,
        )

    @app.exception_handler(Exception)
    async def fault(request: Request, err: Exception) -> JSONResponse:
        log.error("request %s %s failed", request.method, request.url.path, exc_info=err)
        return problem_response(
            500, "the server failed to answer this request; its log has the details", request.url.path
        )


def problem_responses(*statuses: int) -> dict[int | str, dict]:
    """Declare the error answers an endpoint can give, for FastAPI's `responses=`.

    Args:
        *statuses: the HTTP status codes.

    Returns:
        For each status: its meaning on this server, the problem details' schema (422:
        `ValidationProblem`) as `application/problem+json`, and its headers (`Allow`, `Retry-After`,
        `WWW-Authenticate`).
    """
    declared: dict[int | str, dict] = {}
    for status in statuses:
        model = "ValidationProblem" if status == 422 else "Problem"
        declared[status] = {
            "description": STATUS_MEANINGS[status],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{model}"}}},
        }
        if status in _HEADERS:
            declared[status]["headers"] = _HEADERS[status]
    return declared


def add_problem_schemas(spec: dict) -> dict:
    """Put the problem details' schemas into an OpenAPI document's components.

    Args:
        spec: the OpenAPI document (changed in place).

    Returns:
        The same document.
    """
    _, top = models_json_schema(
        [(model, "serialization") for model in PROBLEM_MODELS], ref_template="#/components/schemas/{model}"
    )
    spec.setdefault("components", {}).setdefault("schemas", {}).update(top.get("$defs", {}))
    return spec
