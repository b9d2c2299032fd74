"""Admission of SSE streams: at most ``SSE_MAX_STREAMS`` open per process.

Not a check in the route function alone: the route returns before its stream
starts, so a burst of connections could all pass a check there before any of
them counted. Here the check and the count are one synchronous step
(``admit``), and the slot is given back when the response ends, however it
ends (``release``, called by ``StreamResponse``).
"""

from __future__ import annotations

from gateway.errors import TooManyStreams

RETRY_AFTER_SECONDS = 1


class StreamAdmission:
    """Counts streams admitted and not yet ended, and refuses those over the limit."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def admit(self) -> None:
        """Take a slot, or raise ``TooManyStreams`` (503 with ``Retry-After``)."""
        if self.open >= self.limit:
            raise TooManyStreams(
                f"this gateway holds its maximum of {self.limit} streams",
                "retry later or on another replica; operators raise SSE_MAX_STREAMS",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.open += 1

    def release(self) -> None:
        self.open -= 1
