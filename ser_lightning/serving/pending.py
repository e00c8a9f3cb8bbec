"""The bounded queue of scoring requests: 503 with `Retry-After` when it is full.

At most `max_pending` requests to the scoring routes (POST /v1/predict) are in the server at
once: being received, decoded, waiting for a model call or in one. One more is refused at once,
before its body is read, with 503 Service Unavailable and `Retry-After`, instead of waiting in
an unbounded queue (the batcher's queue and the decoding threads' queue hold only admitted
requests, so they are bounded by it too).

503, not 429: the queue is shared by all clients, and a full one means the server as a whole
is overloaded for a moment (RFC 9110 15.6.4), not that this client sent too many requests
(429, RFC 6585, which is a per-client rate limit; put one in a reverse proxy in front).
"""

from __future__ import annotations

from dataclasses import dataclass

from ser_lightning.serving.problems import problem_response
from ser_lightning.utils.errors import InvalidSetting


@dataclass
class PendingRequests:
    """The bounded queue's counts: requests in the server now, its bound, and those refused so far.

    Raises:
        InvalidSetting: when `max_pending` is below 1 or `retry_after_s` below 1.
    """

    max_pending: int = 32
    retry_after_s: int = 1
    pending: int = 0
    refused: int = 0

    def __post_init__(self) -> None:
        if self.max_pending < 1:
            raise InvalidSetting(f"limits.max_pending_requests={self.max_pending} must be at least 1")
        if self.retry_after_s < 1:
            raise InvalidSetting(f"limits.retry_after_s={self.retry_after_s} must be at least 1 second")

    def as_dict(self) -> dict:
        """Report the counts, as /health shows them.

        Returns:
            `pending`, `max_pending` and `refused`.
        """
        return {"pending": self.pending, "max_pending": self.max_pending, "refused": self.refused}


class PendingRequestLimit:
    """503 with `Retry-After` for a request to `paths` while `queue.max_pending` are in the server."""

    def __init__(self, app, queue: PendingRequests, paths: tuple[str, ...] = ("/v1/predict",)):
        self.app, self.queue, self.paths = app, queue, paths

    async def __call__(self, scope, receive, send):
        """Count a POST to `paths` while it is answered; refuse it with 503 when the queue is full.

        Returns:
            Nothing (None): the answer goes out through `send`, from the inner application or
            as the 503.
        """
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        queue = self.queue
        if queue.pending >= queue.max_pending:
            queue.refused += 1
            refusal = problem_response(
                503,
                f"the server is busy: {queue.max_pending} requests are already queued "
                f"(limits.max_pending_requests); retry after {queue.retry_after_s} s",
                scope["path"],
                # the body is not read: the connection cannot carry another request
                headers={"Retry-After": str(queue.retry_after_s), "Connection": "close"},
            )
            return await refusal(scope, receive, send)
        queue.pending += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            queue.pending -= 1
