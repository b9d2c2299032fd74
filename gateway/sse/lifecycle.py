"""A stream's opening and its end, each told once: one log line, counted in the metrics.

The lines go to the ``gateway.streams`` logger: ``stream opened`` at its first
byte (with how long that took since the request) and ``stream closed`` (why, and
after how long). An end the gateway chose because the client did not keep up
(slow consumer, send timeout, the drain's grace period over) is a WARNING; a
client leaving or a drain is INFO. An unexpected error is counted and left to
the server, which logs it with its traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

from sse_starlette.sse import SendTimeoutError
from starlette.types import Scope

from gateway.metrics import Metrics

log = logging.getLogger("gateway.streams")

INFO_ENDS = frozenset({"disconnect", "shutdown"})
"""Ends that are a stream's normal life; every other one says something went wrong."""


class StreamCut(Exception):
    """The gateway ended a stream that cannot be ended with the end of its body.

    A client that stopped reading cannot take the last chunk, so the response
    raises this to the server, which closes the connection. The cut is already
    logged as one line; ``gateway.logs`` keeps the server from logging it again
    with a traceback."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"stream cut: {reason}")


def write_failure(error: BaseException) -> str:
    """The end reason of a stream whose write failed with ``error``."""
    return "send_timeout" if isinstance(error, SendTimeoutError) else "write_failed"


class Described(Protocol):
    """What a stream says about itself in its log lines (``Subscription``)."""

    def log_fields(self) -> Mapping[str, object]:
        """Fields for the stream's log lines: its channels and how it started."""
        ...


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


class StreamLifecycle:
    """Tells of every stream of the process opening and ending."""

    __slots__ = ("_metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def opened(self, source: Described, scope: Scope, requested_at: float) -> None:
        """The stream's first bytes are written."""
        took = time.perf_counter() - requested_at
        open_time = self._metrics.open_time
        if open_time is not None:
            open_time.observe(took)
        if log.isEnabledFor(logging.INFO):
            fields = {
                **source.log_fields(),
                "client": client_address(scope),
                "open_ms": round(took * 1000, 2),
            }
            log.info("stream opened", extra=fields)

    def closed(self, source: Described, scope: Scope, reason: str, requested_at: float) -> None:
        """The stream has ended, for ``reason`` (one of ``gateway.metrics.CLOSE_REASONS``)."""
        self._metrics.streams_closed[reason] += 1
        if reason == "error":
            return  # the server logs it, with the traceback
        level = logging.INFO if reason in INFO_ENDS else logging.WARNING
        if log.isEnabledFor(level):
            fields = {
                **source.log_fields(),
                "client": client_address(scope),
                "reason": reason,
                "duration_s": round(time.perf_counter() - requested_at, 3),
            }
            log.log(level, "stream closed", extra=fields)
