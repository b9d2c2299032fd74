"""History pages read with ``read.lua``, retried through outages: shared by every broker.

A broker hands ``PageReads`` the script (registered on whatever client reaches the
channel's node: one server's, or a cluster client that routes by slot) and the errors
that mean "not now" rather than "never". Everything else, from the page's bounds to the
one log line per outage, is the same on one server and on a cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ResponseError

from contract.backoff import Backoff
from contract.wire import NO_ENTRY_ID, Keyspace, read_args, read_before_args
from gateway.broker.entry import Entry, StreamKey, stream_key
from gateway.broker.interface import HistoryRefused, Page

log = logging.getLogger(__name__)

LARGEST_ID: StreamKey = (2**64 - 1, 2**64 - 1)
"""The largest stream id Redis can represent: a valid position, with nothing after it."""

READ_FAILURE_LOG_INTERVAL = 10.0
"""Seconds between two log lines about failed history reads: in an outage every stream
that reads history retries, and one line says as much as thousands."""

ReadScript = Callable[..., Awaitable[Any]]
"""``read.lua`` as redis-py registers it: ``await script(keys=[...], args=[...])``."""


class PageReads:
    """Pages of a channel's history and its tip, through ``read.lua``."""

    def __init__(
        self,
        script: ReadScript,
        keyspace: Keyspace,
        *,
        backoff: Backoff,
        retryable: tuple[type[BaseException], ...],
        where: str,
    ) -> None:
        self._script = script
        self._keyspace = keyspace
        self._backoff = backoff
        self._retryable = retryable
        """Errors that mean Redis cannot answer now (an outage, a failover): wait, read again.
        Checked before ``ResponseError``: a cluster's CLUSTERDOWN is both."""
        self._where = where
        self._failures = 0
        """Read attempts failed since the last line that said so."""
        self._failure_logged = -READ_FAILURE_LOG_INTERVAL

    async def after(self, channel: str, after: bytes | None, count: int) -> Page:
        if after is not None and stream_key(after) == LARGEST_ID:
            # Nothing can follow the largest id, and XRANGE refuses to look: read the tip.
            count = 0
        return await self._read(channel, read_args(after, count))

    async def before(self, channel: str, before: bytes | None, count: int) -> Page:
        if before == NO_ENTRY_ID:
            count = 0  # nothing precedes 0-0, and XREVRANGE refuses to look
        page = await self._read(channel, read_before_args(before, count))
        return Page(page.tip, page.entries[::-1])

    async def _read(self, channel: str, args: list[Any]) -> Page:
        key = self._keyspace.history_key(channel)
        attempt = 0
        while True:
            try:
                tip, raw = await self._script(keys=[key], args=args)
                break
            except self._retryable as exc:
                # Streams stay open through a Redis outage: wait and read again.
                delay = self._backoff.delay(attempt)
                attempt += 1
                self._failed(channel, exc)
                await asyncio.sleep(delay)
            except ResponseError as exc:
                raise HistoryRefused(f"history of {channel!r} ({args[0]!r}): {exc}") from None
        entries = tuple(Entry.from_history(channel, entry_id, fields) for entry_id, fields in raw)
        return Page(tip or NO_ENTRY_ID, entries)

    def _failed(self, channel: str, exc: BaseException) -> None:
        self._failures += 1
        now = time.monotonic()
        if now - self._failure_logged >= READ_FAILURE_LOG_INTERVAL:
            self._failure_logged = now
            failures, self._failures = self._failures, 0
            log.warning(
                "history reads failing; streams wait and retry",
                extra={
                    "node": self._where,
                    "channel": channel,
                    "error": str(exc) or type(exc).__name__,
                    "failures": failures,
                },
            )
