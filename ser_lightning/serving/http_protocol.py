"""The server's HTTP/1.1 connections: uvicorn's h11 protocol with a deadline for request headers.

uvicorn closes a connection that stays idle between requests (`timeout_keep_alive`), but once a
client has sent the first byte of a request it waits for the rest of the headers forever, so a
few hundred connections sending a header line now and then hold the server's sockets (a
"slowloris" attack). Here a connection whose request headers are not complete within
`header_timeout_s` of its start (or of the end of its previous response) is closed. The body has
its own limit in `guards.BodyGuard` (the longest pause between two parts).

Over uvicorn's connection limit (`limit_concurrency`, the config's `limits.max_connections`) a
request gets 503 as problem details with `Retry-After`, like every other error answer of the
server, where uvicorn itself answers a plain-text 503 without it. The limit is the same test
uvicorn makes, made as the request starts.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ser_lightning.serving.problems import problem_response
from ser_lightning.utils.errors import InvalidSetting


class HeaderDeadlineProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request headers take over `header_timeout_s`."""

    header_timeout_s: float = 10.0
    retry_after_s: int = 1

    def __init__(self, *args, **kwargs) -> None:
        """Set up the protocol as uvicorn does; the connection limit is checked by `_within_limit`."""
        super().__init__(*args, **kwargs)
        self.connection_limit, self.limit_concurrency = self.limit_concurrency, None
        if self.connection_limit is not None:
            self.app = self._within_limit(self.app)

    def _within_limit(self, app):
        limit = self.connection_limit

        async def limited(scope, receive, send):
            # uvicorn's own test, made before this request's task was counted in self.tasks
            if scope["type"] == "http" and (len(self.connections) >= limit or len(self.tasks) - 1 >= limit):
                self.logger.warning("over the limit of %d connections: 503", limit)
                refusal = problem_response(
                    503,
                    f"the server has too many connections open (limits.max_connections={limit}); "
                    f"retry after {self.retry_after_s} s",
                    scope.get("path", ""),
                    headers={"Retry-After": str(self.retry_after_s), "Connection": "close"},
                )
                return await refusal(scope, receive, send)
            return await app(scope, receive, send)

        return limited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Set up the connection as uvicorn does and start the deadline for the first request's headers."""
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.logger.info(
                "closing a connection whose request headers took over %g s", self.header_timeout_s
            )
            self.transport.close()

    def handle_events(self) -> None:
        """Handle the received data as uvicorn does; once a request's headers are in, stop the deadline."""
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a request's headers are in
            self._cancel_header_deadline()

    def on_response_complete(self) -> None:
        """Finish the response as uvicorn does; on a kept-alive connection, restart the headers' deadline."""
        super().on_response_complete()
        if not self.transport.is_closing():  # keep-alive: the next request's headers are due in time
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the headers' deadline, then close the connection as uvicorn does."""
        self._cancel_header_deadline()
        super().connection_lost(exc)


def protocol_with_header_timeout(
    header_timeout_s: float, retry_after_s: int = 1
) -> type[HeaderDeadlineProtocol]:
    """Make the protocol class for uvicorn's `http=` setting, with this deadline for headers.

    Args:
        header_timeout_s: seconds a connection may take to send a request's headers.
        retry_after_s: the `Retry-After` of the 503 over the connection limit.

    Returns:
        A subclass of HeaderDeadlineProtocol with `header_timeout_s` set.

    Raises:
        InvalidSetting: when `header_timeout_s` is not a positive number.
    """
    if not header_timeout_s > 0:
        raise InvalidSetting(
            f"limits.header_timeout_s={header_timeout_s} must be a positive number of seconds"
        )
    return type(
        "HeaderDeadlineProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout_s": float(header_timeout_s), "retry_after_s": int(retry_after_s)},
    )
