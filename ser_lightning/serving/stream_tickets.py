"""Who may open WS /v1/stream on a server with an API key: the key, or a single-use stream ticket.

A program sends the key with the WebSocket handshake, as for every `/v1` request (`X-API-Key`
or `Authorization: Bearer`). A browser page cannot: JavaScript's `WebSocket` sets no headers,
and the page does not know the key anyway (the browser holds only the login session of the
page). So an authenticated client, the web page through its login session or a program through
the key, asks `POST /v1/stream/tickets` for a ticket and opens
`/v1/stream?...&ticket=TICKET` within `TICKET_TTL_S` (30 s).

Why a ticket rather than the key elsewhere in the handshake:

- in the URL, the key would land in access logs, proxy logs and browser history; a ticket
  does too, but is worth nothing once used (single use) or 30 s after it was issued;
- in `Sec-WebSocket-Protocol`, the page would need the key in JavaScript, where any injected
  script could read it, and proxies log that header as well;
- in the first message, the server would have to accept unauthenticated connections and hold
  them (each taking one of `stream.max_streams`) until that message came.

Only a digest of each ticket is kept, at most `MAX_OUTSTANDING` at once (the oldest goes
first), so a client with the key cannot grow the server's memory by asking for tickets.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from starlette.datastructures import Headers

from ser_lightning.serving.guards import carries_key

TICKET_PARAMETER = "ticket"
# Seconds a ticket stays valid: a page opens its stream right after asking for the ticket.
TICKET_TTL_S = 30.0
# Tickets not yet used or expired, at most: a page asks for one per stream it opens.
MAX_OUTSTANDING = 1024


class StreamTickets:
    """Issues stream tickets and redeems each one once, before it expires.

    Args:
        ttl_s: seconds a ticket stays valid after it is issued.
        max_outstanding: tickets kept at once; issuing one more forgets the oldest.
        clock: the monotonic clock (seconds).
    """

    def __init__(
        self,
        ttl_s: float = TICKET_TTL_S,
        max_outstanding: int = MAX_OUTSTANDING,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ttl_s = ttl_s
        self.max_outstanding = max_outstanding
        self.clock = clock
        self._expiry: OrderedDict[bytes, float] = OrderedDict()  # digest -> expiry, oldest first
        self.issued = 0
        self.redeemed = 0

    @staticmethod
    def _digest(ticket: str) -> bytes:
        return hashlib.sha256(ticket.encode("utf-8", "surrogateescape")).digest()

    def issue(self) -> str:
        """Make a new ticket (256 random bits, URL-safe).

        Returns:
            The ticket, valid for one stream within `ttl_s`.
        """
        now = self.clock()
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._expiry.popitem(last=False)  # expired ones first: they are the oldest
        while len(self._expiry) >= self.max_outstanding:
            self._expiry.popitem(last=False)
        ticket = secrets.token_urlsafe(32)
        self._expiry[self._digest(ticket)] = now + self.ttl_s
        self.issued += 1
        return ticket

    def redeem(self, ticket: str) -> bool:
        """Use up a ticket.

        Args:
            ticket: what the client sent.

        Returns:
            True when it was issued here, not used before and has not expired; it cannot be
            used again either way.
        """
        expiry = self._expiry.pop(self._digest(ticket), None)
        if expiry is None or expiry <= self.clock():
            return False
        self.redeemed += 1
        return True


def stream_refusal(
    api_key: str | None, tickets: StreamTickets, headers: Headers, query: Mapping[str, str]
) -> str | None:
    """Decide whether a stream's handshake may open it.

    A ticket, when one is given, must be valid (and is used up); without one, a server with a key
    needs the key in the handshake's headers, a server without one needs nothing.

    Args:
        api_key: the server's key, or None.
        tickets: the server's tickets.
        headers: the handshake's headers.
        query: the stream URL's query parameters.

    Returns:
        None when the stream may open; else what is wrong and how to fix it.
    """
    ticket = query.get(TICKET_PARAMETER)
    if ticket is not None:
        if tickets.redeem(ticket):
            return None
        return (
            f"the ticket is not valid: unknown, used before, or older than {tickets.ttl_s:g} s; "
            "ask POST /v1/stream/tickets for a new one for each stream"
        )
    if api_key is None or carries_key(headers, api_key.encode()):
        return None
    return (
        "this server needs its API key: send it with the handshake as the header `X-API-Key: KEY` or "
        "`Authorization: Bearer KEY`, or open the stream with ?ticket= from POST /v1/stream/tickets"
    )
