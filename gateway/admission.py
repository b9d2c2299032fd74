"""Admission of SSE streams: at most ``SSE_MAX_STREAMS`` open per process.

An ASGI middleware, not a check in the route: the route returns before its
stream starts, so a burst of connections could all pass a check there before
any of them counted. Here the check and the count are one synchronous step,
and the slot is given back when the response ends, however it ends.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import TooManyStreams, error_response

RETRY_AFTER_SECONDS = 1


class StreamAdmission:
    """Counts requests in flight on the stream route and refuses those over the limit."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.open = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.open >= self.limit:
            refusal = TooManyStreams(
                f"this gateway holds its maximum of {self.limit} streams",
                "retry later or on another replica; operators raise SSE_MAX_STREAMS",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
            await error_response(refusal)(scope, receive, send)
            return
        self.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.open -= 1
