"""Many streams resuming from one position at once: one history read, exactly their events.

A page that ends at the channel's tip is shared only while no entry of the channel has
arrived since it was read (``Hub.live_mark``): a stream that subscribed after such an
entry went out reads history again and gets it.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from gateway.broker import Broker, Entry, HistoryReader, Page
from gateway.fanout import Hub
from gateway.metrics import Metrics
from producers.publisher import Publisher
from tests.support.assertions import (
    assert_cursors_never_move_backwards,
    assert_exactly,
    channel_events,
    messages,
    numbered,
    publish_numbered,
)
from tests.support.processes import GatewayProcess
from tests.support.sse import sse_connect


def redis_reads(gateway: GatewayProcess) -> int:
    reads: int = gateway.stats()["history"]["redis_reads"]
    return reads


async def test_a_crowd_resuming_from_one_id_gets_exactly_the_missed_events_from_one_read(
    redis_url: str, gateway: GatewayProcess
) -> None:
    crowd, missed = 100, 30
    async with Publisher.from_url(redis_url) as publisher:
        (start,) = await publish_numbered(publisher, "echo", [0])
        await publish_numbered(publisher, "echo", range(1, missed + 1))
        reads = redis_reads(gateway)

        async def resume(opened: asyncio.Event, go_live: asyncio.Event) -> list[Any]:
            async with sse_connect(
                gateway.base_url, channels=["echo"], last_event_id=f"echo={start}"
            ) as stream:
                replayed = await stream.take(missed, timeout=30)
                opened.set()
                await go_live.wait()
                return replayed + await stream.take(2, timeout=30)

        go_live = asyncio.Event()
        opened = [asyncio.Event() for _ in range(crowd)]
        streams = [asyncio.create_task(resume(o, go_live)) for o in opened]
        await asyncio.wait_for(asyncio.gather(*(o.wait() for o in opened)), 60)
        assert redis_reads(gateway) - reads == 1, "the crowd shares one read of the page"
        await publish_numbered(publisher, "echo", range(missed + 1, missed + 3))
        go_live.set()
        received = await asyncio.wait_for(asyncio.gather(*streams), 60)
    for events in received:
        assert_exactly(messages(channel_events(events), "echo"), numbered(missed + 2, 1))
        assert_cursors_never_move_backwards(events)


async def test_a_stream_resuming_after_a_publish_gets_what_the_shared_page_lacks(
    redis_url: str, gateway: GatewayProcess
) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        (start,) = await publish_numbered(publisher, "echo", [0])
        await publish_numbered(publisher, "echo", range(1, 6))
        cursor = f"echo={start}"
        async with sse_connect(gateway.base_url, channels=["echo"], last_event_id=cursor) as first:
            # Its page (msg-1..5, the tip) is kept; the subscription stays while it is open.
            early = await first.take(5, timeout=10)
            await publish_numbered(publisher, "echo", [6])
            early += await first.take(1, timeout=10)
            async with sse_connect(
                gateway.base_url, channels=["echo"], last_event_id=cursor
            ) as second:
                late = await second.take(6, timeout=10)
                await publish_numbered(publisher, "echo", [7])
                late += await second.take(1, timeout=10)
    assert_exactly(messages(channel_events(early), "echo"), numbered(6, 1))
    assert_exactly(messages(channel_events(late), "echo"), numbered(7, 1))
    assert_cursors_never_move_backwards(late)


async def test_a_crowd_resuming_while_publishing_gets_every_event_once_in_order(
    redis_url: str, gateway: GatewayProcess
) -> None:
    crowd, missed, racing = 40, 20, 60
    async with Publisher.from_url(redis_url) as publisher:
        (start,) = await publish_numbered(publisher, "echo", [0])
        await publish_numbered(publisher, "echo", range(1, missed + 1))

        async def resume(delay: float) -> list[Any]:
            await asyncio.sleep(delay)
            async with sse_connect(
                gateway.base_url, channels=["echo"], last_event_id=f"echo={start}"
            ) as stream:
                return await stream.take(missed + racing, timeout=60)

        async def race() -> None:
            for n in range(missed + 1, missed + racing + 1):
                await publish_numbered(publisher, "echo", [n])
                await asyncio.sleep(0.005)

        # Streams open before, during and after the publishing, some in the same instant.
        streams = [asyncio.create_task(resume(0.01 * (i % 20))) for i in range(crowd)]
        await race()
        received = await asyncio.wait_for(asyncio.gather(*streams), 90)
    for events in received:
        assert_exactly(messages(channel_events(events), "echo"), numbered(missed + racing, 1))
        assert_cursors_never_move_backwards(events)


async def test_streams_resuming_from_the_tip_and_beyond_it_open_at_once(
    redis_url: str, gateway: GatewayProcess
) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        *_, tip = await publish_numbered(publisher, "echo", range(3))
        ms = int(tip.split("-")[0])
        async with (
            sse_connect(gateway.base_url, channels=["echo"], last_event_id=f"echo={tip}") as at,
            sse_connect(gateway.base_url, channels=["echo"], last_event_id=f"echo={tip}") as again,
        ):
            await publish_numbered(publisher, "echo", [3])
            assert messages(await at.take(1, timeout=10), "echo") == ["msg-3"]
            assert messages(await again.take(1, timeout=10), "echo") == ["msg-3"]
        # A position past the tip: history was reset under it, so it is said and replayed.
        async with sse_connect(
            gateway.base_url, channels=["echo"], last_event_id=f"echo={ms + 10_000_000}-0"
        ) as beyond:
            events = await beyond.take(5, timeout=10)
    assert events[0].event == "history_gap"
    assert_exactly(messages(events, "echo"), numbered(4))


class SlowHistory:
    """A broker's history reads, counted, each held until ``release`` is set."""

    def __init__(self, entries: int) -> None:
        self.entries = tuple(
            Entry("c", b"1-%d" % n, b"1-%d" % (n - 1) if n else b"0-0", b"echo", b"{}")
            for n in range(entries)
        )
        self.reads = 0
        self.release = asyncio.Event()

    async def read_page(self, channel: str, after: bytes | None, count: int) -> Page:
        self.reads += 1
        await self.release.wait()
        return Page(self.entries[-1].id, self.entries[:count])


def _reader(history: SlowHistory) -> HistoryReader:
    return HistoryReader(
        cast(Broker, history), cache_pages=8, cache_bytes=1 << 20, metrics=Metrics()
    )


async def test_a_short_page_is_shared_only_under_the_mark_it_was_read_under() -> None:
    history = SlowHistory(3)
    reader = _reader(history)
    try:
        first = asyncio.create_task(reader.read_after("c", None, 10, "mark-1"))
        await asyncio.sleep(0)
        same = asyncio.create_task(reader.read_after("c", None, 10, "mark-1"))
        moved = asyncio.create_task(reader.read_after("c", None, 10, "mark-2"))
        unmarked = asyncio.create_task(reader.read_after("c", None, 10))
        await asyncio.sleep(0.01)
        assert history.reads == 1
        history.release.set()
        pages = await asyncio.gather(first, same, moved, unmarked)
        assert all(len(page.entries) == 3 for page in pages)
        assert history.reads == 2, "a moved mark reads again; the same mark, or none, shares"
        await reader.read_after("c", None, 10, "mark-2")
        assert history.reads == 2, "kept under the mark it was read under"
        await reader.read_after("c", None, 10, "mark-1")
        await reader.read_after("c", None, 10)
        assert history.reads == 4, "not for an older mark, nor for a reader without one"
    finally:
        await reader.aclose()


async def test_a_full_page_is_shared_whatever_the_mark() -> None:
    history = SlowHistory(5)
    reader = _reader(history)
    try:
        first = asyncio.create_task(reader.read_after("c", b"0-0", 5, "mark-1"))
        await asyncio.sleep(0)
        other = asyncio.create_task(reader.read_after("c", b"0-0", 5, "mark-2"))
        await asyncio.sleep(0.01)
        history.release.set()
        await asyncio.gather(first, other)
        await reader.read_after("c", b"0-0", 5)
        assert history.reads == 1
    finally:
        await reader.aclose()


class QuietBroker:
    """Subscriptions that Redis would confirm; nothing else is used."""

    async def subscribe(self, channel: str) -> None:
        pass

    async def unsubscribe(self, channel: str) -> None:
        pass


async def test_the_live_mark_moves_with_every_entry_interruption_and_resubscription() -> None:
    hub = Hub(
        cast(Broker, QuietBroker()),
        max_buffer_events=100,
        max_buffer_bytes=1 << 20,
        metrics=Metrics(),
    )
    sink = await hub.attach("c")
    assert hub.live_mark("c") is None, "nothing is vouched for before Redis confirms"
    hub.subscribed("c")
    mark = hub.live_mark("c")
    assert mark is not None
    assert hub.live_mark("c") == mark
    hub.live_entry(Entry("c", b"1-1", b"0-0", b"echo", b"{}"))
    assert hub.live_mark("c") != mark
    mark = hub.live_mark("c")
    hub.interrupted(["c"])
    assert hub.live_mark("c") is None
    hub.subscribed("c")
    assert hub.live_mark("c") not in (None, mark), "entries may have been missed meanwhile"
    mark = hub.live_mark("c")
    await hub.detach(sink)
    sink = await hub.attach("c")
    hub.subscribed("c")
    assert hub.live_mark("c") not in (None, mark), "another subscription"
    await hub.detach(sink)
    hub.close()
