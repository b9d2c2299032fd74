"""History reads shared between clients, over any ``Broker``.

Concurrent identical reads share one round trip to Redis, and full pages
anchored on an id (which can never change) are kept in a small LRU for
clients resuming alike: ten thousand clients resuming from the same place cost
one read per page. A short page (fewer entries than asked for) ends at the
channel's tip when it was read, and what follows reaches a stream through its
live flow only if the stream was subscribed before it arrived: such a page is
shared, in flight and in the LRU, only with readers whose mark of the live flow
(``Hub.live_mark``) is the one it was read under, that is, no entry of the channel
arrived since. Entries are shared beyond the cache too: an entry read again
while another stream still holds it (a page from ``earliest``, a short page at
the tip, a page evicted from the cache) is that stream's object, with the frame
built for it, so streams stalled in the same history hold it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import OrderedDict
from collections.abc import Hashable

from gateway.broker.entry import Entry
from gateway.broker.interface import Broker, Page
from gateway.metrics import Metrics

PageKey = tuple[str, bytes | None, int]

ENTRY_OVERHEAD = 256
"""Rough bytes of an ``Entry`` object beside its payload and frame."""


class HistoryReader:
    """Reads history pages through a broker; owns the tasks of reads shared between clients."""

    def __init__(
        self, broker: Broker, *, cache_pages: int, cache_bytes: int, metrics: Metrics
    ) -> None:
        self._broker = broker
        self._cache: OrderedDict[PageKey, tuple[Page, int, Hashable | None]] = OrderedDict()
        """Pages by key: their size, and the live mark of a short page (None: a full one)."""
        self._cache_pages = cache_pages
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._inflight: dict[PageKey, tuple[asyncio.Task[Page], Hashable | None]] = {}
        self._inflight_before: dict[PageKey, asyncio.Task[Page]] = {}
        self._pages = metrics.history_pages
        """Pages handed out, by source (redis, cache, shared)."""
        self._held: weakref.WeakValueDictionary[tuple[str, bytes], Entry] = (
            weakref.WeakValueDictionary()
        )
        """Entries of history pages that some stream or the cache still holds."""

    async def tip(self, channel: str) -> bytes:
        """The last id ever generated in ``channel`` (``0-0`` if it has none)."""
        return (await self.read_after(channel, None, 0)).tip

    async def read_after(
        self, channel: str, after: bytes | None, count: int, live: Hashable | None = None
    ) -> Page:
        """Up to ``count`` entries after ``after`` (``None``: from the earliest retained).

        ``live`` is the caller's mark of the channel's live flow, taken now
        (``Hub.live_mark``): a short page read under the same mark is complete for the
        caller and is shared. None: the reader has no live flow to rely on (the history
        route; a stream whose live flow is interrupted, which reads again once it is
        back): it shares a read in flight, as fresh as its own would be, but gets no
        short page from the cache."""
        key: PageKey = (channel, after, count)
        page = self.kept(channel, after, count, live)
        if page is not None:
            return page
        inflight = self._inflight.get(key)
        if inflight is not None:
            task, mark = inflight
            # Shielded: one client leaving must not cancel a read others wait for.
            page = await asyncio.shield(task)
            if not count or len(page.entries) == count or live is None or mark == live:
                self._pages["shared"] += 1
                return page
            # A short page read before entries the caller's live flow may not bring.
        task = asyncio.create_task(self._read(key, live), name=f"history-{channel}")
        self._inflight[key] = (task, live)
        task.add_done_callback(lambda _: self._done(key, task))
        return await asyncio.shield(task)

    def kept(
        self, channel: str, after: bytes | None, count: int, live: Hashable | None = None
    ) -> Page | None:
        """``read_after``'s page if it is at hand (in the cache), without waiting; else None."""
        key: PageKey = (channel, after, count)
        cached = self._cache.get(key)
        if cached is None:
            return None
        page, _, mark = cached
        if mark is None or mark == live:
            self._cache.move_to_end(key)
            self._pages["cache"] += 1
            return page
        if live is not None:
            self._forget(key)  # the live flow moved on: a mark never comes back
        return None

    def _done(self, key: PageKey, task: asyncio.Task[Page]) -> None:
        inflight = self._inflight.get(key)
        if inflight is not None and inflight[0] is task:
            del self._inflight[key]

    async def read_before(self, channel: str, before: bytes | None, count: int) -> Page:
        """Up to ``count`` entries just before ``before`` (``None``: the newest), oldest first.

        Concurrent identical reads share one round trip (a crowd of pages opening on a
        channel's latest entries); nothing is cached: the newest page changes with every
        publish, and pages further back are read by one client at a time.
        """
        key: PageKey = (channel, before, count)
        task = self._inflight_before.get(key)
        if task is None:
            self._pages["redis"] += 1
            read = self._broker.read_page_before(channel, before, count)
            task = asyncio.create_task(read, name=f"history-before-{channel}")
            self._inflight_before[key] = task
            task.add_done_callback(lambda _: self._inflight_before.pop(key, None))
        else:
            self._pages["shared"] += 1
        return await asyncio.shield(task)

    async def _read(self, key: PageKey, live: Hashable | None) -> Page:
        channel, after, count = key
        self._pages["redis"] += 1
        page = self._shared(await self._broker.read_page(channel, after, count))
        if count and self._cache_pages:
            if len(page.entries) == count:
                # Pages from "earliest" shift as history is trimmed; id-anchored full
                # pages are fixed.
                if after is not None:
                    self._remember(key, page, None)
            elif live is not None:
                # Trimming happens only as entries are published, and those move the mark.
                self._remember(key, page, live)
        return page

    def _shared(self, page: Page) -> Page:
        """``page`` with every entry that is still held elsewhere replaced by that object."""
        if not page.entries:
            return page
        held = self._held
        entries = []
        linked, prev = True, page.entries[0].prev
        for entry in page.entries:
            key = (entry.channel, entry.id)
            known = held.get(key)
            if known is None:
                held[key] = known = entry
            entries.append(known)
            if entry.prev != prev:
                linked = False
            prev = entry.id
        return Page(page.tip, tuple(entries), linked)

    def _remember(self, key: PageKey, page: Page, live: Hashable | None) -> None:
        # Bounded in bytes as well as pages: pages of large events would otherwise pin
        # page_size * cache_pages payloads (and their frames) in memory.
        size = sum(2 * len(entry.data) + ENTRY_OVERHEAD for entry in page.entries)
        if size > self._cache_bytes:
            return
        self._forget(key)
        self._cache[key] = (page, size, live)
        self._cached_bytes += size
        while len(self._cache) > self._cache_pages or self._cached_bytes > self._cache_bytes:
            _, (_, evicted, _) = self._cache.popitem(last=False)
            self._cached_bytes -= evicted

    def _forget(self, key: PageKey) -> None:
        cached = self._cache.pop(key, None)
        if cached is not None:
            self._cached_bytes -= cached[1]

    async def aclose(self) -> None:
        """Cancel and await reads still in flight."""
        tasks = [task for task, _ in self._inflight.values()]
        tasks += self._inflight_before.values()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
