"""ASGI middleware that every request passes before the API or the page sees it.

From the outside in:

- `TrustedHosts` (Starlette's TrustedHostMiddleware, answering with problem details): a request
  whose `Host` is not a name of this server gets 400, so a web page on another site cannot
  reach a loopback server through a DNS name it points at 127.0.0.1 (DNS rebinding).
- `CrossOriginPolicy`: browsers' cross-origin rules. Same-origin requests (the page itself) pass;
  only origins listed in `cors_origins` may call the server from another site, never with
  credentials; other origins get no CORS headers (so their pages cannot read an answer) and 403
  for anything but GET and HEAD. It replaces Gradio's own policy, which lets any localhost page
  call a loopback server with credentials.
- `ApiKeyGuard`: with an API key set, a `/v1` request without it gets 401 before its body is read
  (WS /v1/stream checks the key or a stream ticket itself; `serving.stream_tickets`).
- `PendingRequestLimit` (`serving.pending`): the bounded queue; 503 with `Retry-After` when full.
- `BodyGuard`: 413 for a body over the size limit (from its declared length, or as its bytes
  arrive), and 408 when the body stalls for longer than `idle_timeout_s` between two parts.
- `MethodGuard`: a method a route does not take gets 405 with `Allow`, also where the page
  mounted at `/` would otherwise answer 404 for every path.

Every refusal is RFC 9457 problem details (`serving.problems`).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import socket
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp

from ser_lightning.serving.problems import problem_response

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
API_PREFIX = "/v1"
SAFE_METHODS = ("GET", "HEAD")
# What a listed origin's pages may send (the API's own headers); nothing that carries cookies.
CORS_HEADERS = ("content-type", "x-api-key", "authorization")


def host_names(bind_host: str, allowed_hosts: list[str] | tuple[str, ...] = ()) -> list[str]:
    """List the `Host` names the server answers to.

    Args:
        bind_host: the address the server listens on.
        allowed_hosts: further names it answers to.

    Returns:
        The loopback names, `allowed_hosts` and the bound host (on a wildcard address, this
        machine's name and addresses), lower-cased, IPv6 addresses in brackets, without repeats.
    """
    names = [*LOOPBACK_NAMES, *(str(h).lower() for h in allowed_hosts)]
    if bind_host in ("0.0.0.0", "::", ""):
        machine = socket.gethostname()
        names += [machine, socket.getfqdn()]
        try:
            names += [info[4][0] for info in socket.getaddrinfo(machine, None)]
        except OSError:
            pass  # a machine name that does not resolve: the names above and allowed_hosts
    else:
        names.append(bind_host)
    bracketed = [f"[{n}]" if _is_ipv6(n) else n.lower() for n in names]
    return list(dict.fromkeys(bracketed))


def _is_ipv6(name: str) -> bool:
    try:
        return ipaddress.ip_address(name).version == 6
    except ValueError:
        return False


def _refusal(scope, status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return problem_response(status, detail, scope.get("path", ""), headers=headers)


class CrossOriginPolicy:
    """Answers browsers' cross-origin checks for the whole application (API and page alike)."""

    def __init__(self, app, allowed_origins: list[str] | tuple[str, ...] = ()):
        self.app = app
        self.allowed = {str(o).rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope, receive, send):
        """Pass same-origin requests; answer preflights; refuse unlisted origins' unsafe methods with 403.

        Requests from a listed origin get its `Access-Control-Allow-Origin`; the inner
        applications' own CORS headers are removed from every answer.

        Returns:
            Nothing (None): the answer goes out through `send`, from the inner application or
            as a refusal.
        """
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or self._same_origin(origin, headers.get("host", "")):
            return await self.app(scope, receive, self._without_cors_headers(send, None))
        listed = origin.rstrip("/").lower() in self.allowed
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            return await self._preflight(scope, origin, listed, headers)(scope, receive, send)
        if not listed and scope["method"] not in SAFE_METHODS:
            refusal = _refusal(
                scope,
                403,
                f"requests from pages of {origin} are not allowed; add the origin to cors_origins "
                "if its pages should call this server",
            )
            return await refusal(scope, receive, send)
        return await self.app(scope, receive, self._without_cors_headers(send, origin if listed else None))

    @staticmethod
    def _same_origin(origin: str, host: str) -> bool:
        return urlsplit(origin).netloc.lower() == host.lower() and host != ""

    @staticmethod
    def _preflight(scope, origin: str, listed: bool, headers: Headers) -> JSONResponse:
        if not listed:
            return _refusal(scope, 403, f"cross-origin requests from {origin} are not allowed (cors_origins)")
        asked = [h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",")]
        return JSONResponse(
            {},
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": "GET, POST",
                "Access-Control-Allow-Headers": ", ".join(h for h in asked if h in CORS_HEADERS),
                "Access-Control-Max-Age": "600",
                "Vary": "Origin",
            },
        )

    @staticmethod
    def _without_cors_headers(send, allow_origin: str | None):
        """Wrap `send` to remove the inner applications' CORS headers, and add ours for a listed origin.

        Returns:
            The wrapped `send`.
        """

        async def filtered(message):
            if message["type"] == "http.response.start":
                response = MutableHeaders(scope=message)
                for name in [k for k in response.keys() if k.startswith("access-control-")]:
                    del response[name]
                if allow_origin is not None:
                    response["Access-Control-Allow-Origin"] = allow_origin
                    response.append("Vary", "Origin")
            await send(message)

        return filtered


def carries_key(headers: Headers, expected: bytes) -> bool:
    """Check a request's `X-API-Key` or `Authorization: Bearer` header against the key.

    Args:
        headers: the request's headers.
        expected: the key, encoded.

    Returns:
        Whether the request carries the key (compared in constant time).
    """
    given = headers.get("x-api-key")
    if given is None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token if scheme.lower() == "bearer" else ""
    return hmac.compare_digest(given.encode(), expected)


def same_origin(headers: Headers) -> bool:
    """Tell whether a request comes from a page of this server (or from no page at all).

    Returns:
        True when the request has no `Origin`, or one whose host and port are the `Host` header's.
    """
    origin = headers.get("origin")
    return origin is None or CrossOriginPolicy._same_origin(origin, headers.get("host", ""))


class ApiKeyGuard:
    """401 for an API request without the key, before the request body is read.

    Args:
        app: the inner application.
        api_key: the key; None lets every request through.
        own_check_websockets: WebSocket paths that check their credentials themselves (the stream
            takes a ticket as well as the key, and refuses with a close code a browser can read).
        session_paths: paths where the web page's login session counts as the key, for requests
            from the server's own pages.
        page_session: tells whether a request's headers carry a login session of the web page.
    """

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None,
        own_check_websockets: tuple[str, ...] = (),
        session_paths: tuple[str, ...] = (),
        page_session: Callable[[Headers], bool] | None = None,
    ):
        self.app = app
        self.expected = api_key.encode() if api_key else None
        self.own_check_websockets = own_check_websockets
        self.session_paths = session_paths
        self.page_session = page_session

    async def __call__(self, scope, receive, send):
        """Answer a `/v1` request that lacks the key with 401 before its body is read; pass all else.

        Returns:
            Nothing (None): the answer goes out through `send`, from the inner application or
            as the 401.
        """
        if self.expected is None or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if not (path == API_PREFIX or path.startswith(API_PREFIX + "/")) or self.admits(scope):
            return await self.app(scope, receive, send)
        refusal = _refusal(
            scope,
            401,
            "this server needs its API key: send it as the header `X-API-Key: KEY` or `Authorization: Bearer KEY`",
            headers={"WWW-Authenticate": "Bearer", "Connection": "close"},
        )
        return await refusal(scope, receive, send)

    def admits(self, scope) -> bool:
        """Tell whether a `/v1` request may pass: it carries the key, or its path checks for itself.

        Returns:
            True for the key, a WebSocket of `own_check_websockets`, or the page's login session
            from a page of this server on one of `session_paths`.
        """
        path, headers = scope.get("path", ""), Headers(scope=scope)
        if scope["type"] == "websocket" and path in self.own_check_websockets:
            return True
        if carries_key(headers, self.expected):
            return True
        return (
            path in self.session_paths
            and self.page_session is not None
            and same_origin(headers)
            and self.page_session(headers)
        )


class BodyTooLarge(HTTPException):
    """413: the request body is larger than `max_bytes`; the connection is closed."""

    def __init__(self, max_bytes: int):
        super().__init__(
            413,
            f"the request body is larger than this server's limit of {max_bytes / 1e6:g} MB "
            "(max_upload_mb); send a shorter recording or a compressed format (flac, ogg, mp3)",
            headers={"Connection": "close"},
        )


class BodyStalled(HTTPException):
    """408: the request body stopped arriving for `idle_timeout_s`; the connection is closed."""

    def __init__(self, idle_timeout_s: float):
        super().__init__(
            408,
            f"the request body stopped arriving for {idle_timeout_s:g} s (limits.body_timeout_s); "
            "send the whole recording without pausing",
            headers={"Connection": "close"},
        )


class BodyGuard:
    """Refuse request bodies that are too large or stall.

    413 for a body over `max_bytes`, by its declared length or as it arrives; 408 when no part
    of an unfinished body arrives for `idle_timeout_s`.
    """

    def __init__(self, app, max_bytes: int, idle_timeout_s: float | None = None):
        self.app, self.max_bytes, self.idle_timeout_s = app, max_bytes, idle_timeout_s

    async def __call__(self, scope, receive, send):
        """Enforce the body limits on an HTTP request.

        A declared length over the limit gets 413 at once; otherwise the body is counted and
        timed as the inner application receives it, raising BodyTooLarge or BodyStalled there.

        Returns:
            Nothing (None): the answer goes out through `send`, from the inner application or
            as the 413.
        """
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            error = BodyTooLarge(self.max_bytes)
            return await _refusal(scope, 413, error.detail, error.headers)(scope, receive, send)
        received, finished = 0, False

        async def guarded_receive():
            nonlocal received, finished
            if finished or self.idle_timeout_s is None:
                message = await receive()  # after the body: waiting for a disconnect is not a stall
            else:
                try:
                    message = await asyncio.wait_for(receive(), self.idle_timeout_s)
                except TimeoutError:
                    raise BodyStalled(self.idle_timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                finished = not message.get("more_body", False)
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return await self.app(scope, guarded_receive, send)


class TrustedHosts(TrustedHostMiddleware):
    """400 (problem details) for a request whose `Host` is not one of the server's names."""

    async def __call__(self, scope, receive, send):
        """Pass a request whose `Host` (without its port) is one of `allowed_hosts`; refuse others.

        Returns:
            Nothing (None): the answer goes out through `send`, from the inner application or
            as the 400.
        """
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        given = Headers(scope=scope).get("host", "").lower()
        # "[::1]:8000" -> "[::1]", "localhost:8000" -> "localhost"
        host = given[: given.find("]") + 1] if given.startswith("[") else given.split(":")[0]
        if any(host == p or (p.startswith("*") and host.endswith(p[1:])) for p in self.allowed_hosts):
            return await self.app(scope, receive, send)
        refusal = _refusal(
            scope,
            400,
            f"the Host header {given!r} is not a name of this server: call it by the name it was started "
            "with, or add the name to allowed_hosts",
        )
        return await refusal(scope, receive, send)


class MethodGuard:
    """405 with `Allow` for a method that the path does not take.

    `routes()` gives each path of the application (e.g. those of its OpenAPI document) and the
    methods it takes; it is asked once, at the first request, when every route is in place. A
    path under one of `owned_prefixes` (the API's `/v1`) that is not in it gets 404 here, as
    problem details, rather than the page's own 404.
    """

    def __init__(
        self, app, routes: Callable[[], Mapping[str, set[str]]], owned_prefixes: tuple[str, ...] = ()
    ):
        self.app, self.routes, self.owned_prefixes = app, routes, owned_prefixes
        self._table: Mapping[str, set[str]] | None = None

    async def __call__(self, scope, receive, send):
        """Answer 405 for a path of `routes()` with a method it does not take, 404 for an unknown API path.

        Mounted applications (the page at `/`) are not in the table, so their catch-all does
        not turn a wrong method on an API path into 404.

        Returns:
            Nothing (None): the answer goes out through `send`, from the inner application or
            as the 405 or 404.
        """
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self._table is None:
            self._table = {path: {m.upper() for m in methods} for path, methods in self.routes().items()}
        path = scope["path"]
        allowed = self._table.get(path)
        if allowed is None and any(path == p or path.startswith(p + "/") for p in self.owned_prefixes):
            refusal = _refusal(scope, 404, f"{path} is not a path of this API; /openapi.json lists its paths")
            return await refusal(scope, receive, send)
        if allowed is None or scope["method"] in allowed:
            return await self.app(scope, receive, send)
        methods = ", ".join(sorted(allowed))
        refusal = _refusal(
            scope, 405, f"{scope['path']} takes {methods}, not {scope['method']}", headers={"Allow": methods}
        )
        return await refusal(scope, receive, send)
