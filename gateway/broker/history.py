"""History reads: pages of a channel's Redis Stream, shared between clients.

Every read goes through ``read.lua``, which returns the page together with
the stream's tip (its last generated id) atomically, so the caller can tell
"caught up" from "trimmed" from "history lost" without racing publishers.
Concurrent identical reads share one Redis round trip, and full pages (which
can never change) are kept in a small LRU for clients resuming alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contract.backoff import Backoff
from contract.wire import NO_ENTRY_ID, Keyspace, read_args, script_source
from gateway.broker.entry import Entry

log = logging.getLogger(__name__)

PageKey = tuple[str, bytes | None, int]

ENTRY_OVERHEAD = 256
"""Rough bytes of an ``Entry`` object beside its payload and frame."""


@dataclass(frozen=True, slots=True)
class Page:
    """Entries after a position, and the stream's tip when they were read."""

    tip: bytes
    entries: tuple[Entry, ...]


class HistoryReader:
    """Reads history pages; owns the tasks of reads shared between clients."""

    def __init__(
        self,
        redis: Redis,
        keyspace: Keyspace,
        *,
        cache_pages: int,
        cache_bytes: int = 32 * 1024 * 1024,
        backoff: Backoff | None = None,
    ) -> None:
        self._backoff = backoff or Backoff()
        self._redis = redis
        self._keyspace = keyspace
        self._script = redis.register_script(script_source("read"))
        self._cache: OrderedDict[PageKey, tuple[Page, int]] = OrderedDict()
        self._cache_pages = cache_pages
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._inflight: dict[PageKey, asyncio.Task[Page]] = {}
        self.redis_reads = 0

    async def tip(self, channel: str) -> bytes:
        """The last id ever generated in ``channel`` (``0-0`` if it has none)."""
        return (await self.read_after(channel, None, 0)).tip

    async def read_after(self, channel: str, after: bytes | None, count: int) -> Page:
        """Up to ``count`` entries after ``after`` (``None``: from the earliest retained)."""
        key: PageKey = (channel, after, count)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached[0]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._read(key), name=f"history-{channel}")
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        # Shielded: one client leaving must not cancel a read others wait for.
        return await asyncio.shield(task)

    async def _read(self, key: PageKey) -> Page:
        channel, after, count = key
        attempt = 0
        while True:
            self.redis_reads += 1
            try:
                tip, raw = await self._script(
                    keys=[self._keyspace.history_key(channel)], args=read_args(after, count)
                )
                break
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # Clients stay connected through a Redis outage: wait and read again.
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.warning("history read of %r failed (%s); retry in %.2fs", channel, exc, delay)
                await asyncio.sleep(delay)
        entries = tuple(Entry.from_history(channel, entry_id, fields) for entry_id, fields in raw)
        page = Page(tip or NO_ENTRY_ID, entries)
        # Pages from "earliest" shift as history is trimmed; only id-anchored full pages are fixed.
        if after is not None and count and len(entries) == count and self._cache_pages:
            self._remember(key, page)
        return page

    def _remember(self, key: PageKey, page: Page) -> None:
        # Bounded in bytes as well as pages: pages of large events would otherwise pin
        # page_size * cache_pages payloads (and their frames) in memory.
        size = sum(2 * len(entry.data) + ENTRY_OVERHEAD for entry in page.entries)
        if size > self._cache_bytes or key in self._cache:
            return
        self._cache[key] = (page, size)
        self._cached_bytes += size
        while len(self._cache) > self._cache_pages or self._cached_bytes > self._cache_bytes:
            _, (_, evicted) = self._cache.popitem(last=False)
            self._cached_bytes -= evicted

    async def aclose(self) -> None:
        """Cancel and await reads still in flight."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
