"""The server's HTTP/1.1 connections: uvicorn's h11 protocol with a deadline for request headers.

uvicorn closes a connection that stays idle between requests (`timeout_keep_alive`), but once a
client has sent the first byte of a request it waits for the rest of the headers forever, so a
few hundred connections sending a header line now and then hold the server's sockets (a
"slowloris" attack). Here a connection whose request headers are not complete within
`header_timeout_s` of its start (or of the end of its previous response) is closed. The body has
its own limit in `guards.BodyGuard` (the longest pause between two parts).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ser_lightning.utils.errors import InvalidSetting


class HeaderDeadlineProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request headers take over `header_timeout_s`."""

    header_timeout_s: float = 10.0

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


def protocol_with_header_timeout(header_timeout_s: float) -> type[HeaderDeadlineProtocol]:
    """Make the protocol class for uvicorn's `http=` setting, with this deadline for headers.

    Args:
        header_timeout_s: seconds a connection may take to send a request's headers.

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
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout_s": float(header_timeout_s)}
    )
