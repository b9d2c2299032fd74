"""How many replicas must hold an event before its publish is acknowledged.

Redis replicates asynchronously: a master that dies right after acknowledging a write
can take it with it. With ``replicas`` = N > 0, a publish is acknowledged (and notified
live) only once ``WAIT`` says N replicas hold it; if they do not within the timeout,
the publish is retried with its token until they do, never dropped. The default
(``None``, "auto") asks for 1 where the channel's shard has a replica online and 0 where
it has none, looked up at most once a second per shard, and again whenever ``WAIT``
falls short (a replica that just went away must not stall every publish).
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import ResponseError

from producers.writer import RETRYABLE, Writer

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0
"""How long a shard's count of online replicas is trusted (auto mode)."""


class Durability:
    """The replica count each publish waits for, per shard."""

    def __init__(self, replicas: int | None = None) -> None:
        if replicas is not None and replicas < 0:
            raise ValueError("publish replicas must be >= 0 (or None for auto)")
        self.replicas = replicas
        self._online: dict[str, tuple[int, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def auto(self) -> bool:
        return self.replicas is None

    async def required(self, writer: Writer, key: str) -> int:
        """Replicas that must confirm a publish to ``key`` before it is acknowledged."""
        if self.replicas is not None:
            return self.replicas
        shard = await writer.shard_of(key)
        known = self._online.get(shard)
        if known is None or time.monotonic() - known[1] > RECHECK_SECONDS:
            lock = self._locks.setdefault(shard, asyncio.Lock())
            async with lock:  # one lookup per shard, however many publishes wait
                known = self._online.get(shard)
                if known is None or time.monotonic() - known[1] > RECHECK_SECONDS:
                    return min(1, await self._look_up(writer, key, shard))
        return min(1, known[0])

    async def accept_shortfall(self, writer: Writer, key: str, acked: int) -> bool:
        """After WAIT confirmed only ``acked`` replicas: may the publish be acknowledged?

        Only in auto mode, and only when the shard has no replica online any more.
        """
        if self.replicas is not None:
            return False
        return await self._look_up(writer, key, await writer.shard_of(key)) <= acked

    async def _look_up(self, writer: Writer, key: str, shard: str) -> int:
        try:
            online = await writer.online_replicas(key)
        except ResponseError as exc:  # INFO denied by an ACL, or renamed away
            if isinstance(exc, RETRYABLE):
                raise
            if shard not in self._online:
                log.warning(
                    "cannot see the replicas of %s (%s): publishes to its channels do not"
                    " wait for one; set SSE_PUBLISH_REPLICAS to make them",
                    shard,
                    exc,
                )
            online = 0
        before = self._online.get(shard)
        self._online[shard] = (online, time.monotonic())
        if before is not None and before[0] and not online:
            log.warning(
                "no replica of %s is online: publishes to its channels are acknowledged"
                " without a replica copy until one is back",
                shard,
            )
        elif before is not None and not before[0] and online:
            log.info("%s has %d replica(s) online again: publishes wait for one", shard, online)
        return online
