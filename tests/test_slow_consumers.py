"""Slow consumers: a client that stops reading is cut with a retry hint instead of growing
the gateway's memory; fast clients on the same channel are not held back by it; the slow
client resumes from its cursor and loses nothing while history holds."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import psutil
import pytest

from contract.events import Echo, EchoPayload
from producers.publisher import Publisher
from tests.support.assertions import assert_exactly, numbered
from tests.support.processes import GatewayProcess
from tests.support.raw_sse import Event, RawStream, SSEParser, recv_events, stalled_socket

CHANNEL = "bulk"
PAYLOAD_PAD = "x" * 32_000
"""About 32 KB per event: a thousand events are many MB, far past every buffer."""

BUFFER_ENV = {
    "SSE_CLIENT_BUFFER_EVENTS": "400",
    "SSE_CLIENT_BUFFER_BYTES": str(2 * 1024 * 1024),
    # Long enough that a full buffer, not a blocked write, is what cuts a stalled client.
    "SSE_SEND_TIMEOUT": "600",
}

GatewayFactory = Callable[..., GatewayProcess]


def number_of(event: Event) -> str:
    """``{"message": "msg-12 xxx..."}`` -> ``"msg-12"``."""
    message: str = json.loads(event.data)["message"]
    return message.split(" ", 1)[0]


def numbers_of(events: list[Event]) -> list[str]:
    return [number_of(e) for e in events if e.event == "echo"]


async def publish_padded(
    publisher: Publisher, numbers: range, sent_at: dict[str, float] | None = None
) -> int:
    """Publish ``msg-<n> xxxx...`` for each n; returns the payload bytes published."""
    published = 0
    for n in numbers:
        data = Echo(data=EchoPayload(message=f"msg-{n} {PAYLOAD_PAD}")).encode_data()
        if sent_at is not None:
            sent_at[f"msg-{n}"] = time.monotonic()
        await publisher.publish_raw(CHANNEL, "echo", data)
        published += len(data)
    return published


@dataclass
class FastReader:
    """Reads a stream as fast as it comes, noting each event's delay since its publish."""

    stream: RawStream
    events: list[Event] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    async def read(self, total: int, sent_at: dict[str, float]) -> None:
        received = 0
        while received < total:
            batch = await self.stream.read()
            if batch is None:
                raise AssertionError(f"fast client cut after {received} events: {self.events[-1:]}")
            now = time.monotonic()
            for event in batch:
                self.events.append(event)
                if event.event != "echo":
                    raise AssertionError(f"fast client got a control event: {event}")
                received += 1
                self.latencies.append(now - sent_at.get(number_of(event), now))


async def open_stalled(
    gateway: GatewayProcess, channels: Sequence[str] = (CHANNEL,)
) -> tuple[socket.socket, SSEParser]:
    """A client that read its opening frame (so it has a cursor) and then stops reading."""
    sock = stalled_socket(gateway.port, channels, rcvbuf=4096)
    parser = SSEParser()
    await recv_events(sock, parser, until=lambda: parser.last_id is not None, timeout=10)
    return sock, parser


async def open_fast(
    gateway: GatewayProcess, last_event_id: str | None = None, channels: Sequence[str] = (CHANNEL,)
) -> RawStream:
    stream = await RawStream.open(gateway.port, channels, last_event_id=last_event_id)
    while stream.last_id is None:  # the opening id-only frame: from here on it is live
        assert await stream.read() is not None, "stream closed before it opened"
    return stream


async def resume_and_read(
    gateway: GatewayProcess, cursor: str, count: int, channels: Sequence[str] = (CHANNEL,)
) -> list[Event]:
    stream = await open_fast(gateway, last_event_id=cursor, channels=channels)
    reader = FastReader(stream)
    try:
        await asyncio.wait_for(reader.read(count, {}), timeout=60)
    finally:
        await stream.aclose()
    return reader.events


def assert_cut_with_a_retry_hint(events: list[Event], parser: SSEParser, total: int) -> int:
    """The slow client got a contiguous prefix, then a ``reconnect`` hint; returns its length."""
    assert parser.finished, "the gateway did not end the slow client's stream"
    assert events, "the slow client got nothing"
    last = events[-1]
    assert last.event == "reconnect", f"the stream ended without a reconnect event: {last}"
    assert json.loads(last.data) == {"reason": "slow_consumer", "retry_ms": 2000}
    assert parser.retry == 2000
    received = numbers_of(events[:-1])
    assert_exactly(received, numbered(len(received)))
    assert len(received) < total, "the slow client was never cut: its buffer did not fill"
    return len(received)


@pytest.mark.parametrize(
    "channels",
    # On one channel the clients take seats in its fan-out; on two (the second one quiet)
    # they share a lockstep: either way the stalled one must leave it and lose nothing.
    [[CHANNEL], [CHANNEL, "quiet"]],
    ids=["one-channel", "two-channels"],
)
async def test_a_client_that_stops_reading_is_cut_with_a_hint_and_fast_ones_are_not_held_back(
    redis_url: str, gateway_factory: GatewayFactory, channels: list[str]
) -> None:
    gateway = gateway_factory(env=BUFFER_ENV)
    total = 800  # ~25 MB: several times the socket buffers plus the 2 MiB client buffer
    slow, slow_parser = await open_stalled(gateway, channels)
    fast = [await open_fast(gateway, channels=channels) for _ in range(2)]
    sent_at: dict[str, float] = {}
    readers = [FastReader(stream) for stream in fast]
    try:
        async with Publisher.from_url(redis_url) as publisher:
            reading = [asyncio.create_task(r.read(total, sent_at)) for r in readers]
            await publish_padded(publisher, range(total), sent_at)
            await asyncio.wait_for(asyncio.gather(*reading), timeout=60)
        # Every fast client has everything while the stalled one has read nothing and still
        # holds its stream: fan-out did not wait for the slow client (were it blocked behind
        # it, the fast ones would wait until the send timeout, long after this test's).
        assert gateway.open_streams() == 3
        # The fast clients are written by their group; the stalled one left it.
        assert gateway.stats()["hub"]["grouped"] == len(fast) * len(channels)  # type: ignore[index]
        for reader in readers:
            assert_exactly(numbers_of(reader.events), numbered(total))
            latencies = sorted(reader.latencies)
            median, worst = latencies[len(latencies) // 2], latencies[-1]
            print(f"\nfast client latency: median {median * 1000:.0f} ms, max {worst:.2f} s")
            assert median < 1, f"fast client median latency {median:.2f}s"

        # The slow client reads again: what was in flight, then the hint, then the end.
        events = await recv_events(slow, slow_parser, until=lambda: False, timeout=30)
        got = assert_cut_with_a_retry_hint(events, slow_parser, total)
        assert slow_parser.last_id is not None
        rest = await resume_and_read(gateway, slow_parser.last_id, total - got, channels)
        assert_exactly(numbers_of(events) + numbers_of(rest), numbered(total))
    finally:
        slow.close()
        for stream in fast:
            await stream.aclose()


async def test_stalled_clients_keep_gateway_memory_bounded_and_lose_nothing(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    # The resuming clients' history pages are cached up to a bound well below what is
    # pushed, so that an unbounded cache would show as growth too; small pages keep the
    # transient memory of one read (page, frames, write buffer) small beside it.
    env = {"SSE_HISTORY_CACHE_BYTES": str(4 * 2**20), "SSE_HISTORY_PAGE_SIZE": "50"}
    gateway = gateway_factory(env={**BUFFER_ENV, **env})
    process = psutil.Process(gateway.pid)
    stalled = [await open_stalled(gateway) for _ in range(4)]
    fast = FastReader(await open_fast(gateway))
    warmup, total = 100, 1500  # then ~45 MB through the gateway
    try:
        async with Publisher.from_url(redis_url) as publisher:
            # Warm up: the stalled clients' sockets fill and the steady-state allocations exist.
            await publish_padded(publisher, range(warmup))
            await asyncio.wait_for(fast.read(warmup, {}), timeout=30)
            baseline = process.memory_info().rss
            peak = baseline
            reading = asyncio.create_task(fast.read(total - warmup, {}))
            publishing = asyncio.create_task(publish_padded(publisher, range(warmup, total)))
            while not (reading.done() and publishing.done()):
                peak = max(peak, process.memory_info().rss)
                await asyncio.wait({reading, publishing}, timeout=0.05)
            pushed = await publishing
            await reading
        growth = peak - baseline
        print(
            f"\npushed {pushed / 2**20:.1f} MiB past 4 stalled clients; gateway RSS "
            f"{baseline / 2**20:.1f} -> peak {peak / 2**20:.1f} MiB (+{growth / 2**20:.1f})",
            end="",
        )
        # Had the stalled clients' buffers grown, the gateway would hold most of what was
        # pushed (every entry and its frame). Bounded buffers keep it to a small fraction.
        assert growth < pushed / 4, f"gateway RSS grew by {growth / 2**20:.1f} MiB"
        assert_exactly(numbers_of(fast.events), numbered(total))

        # Each stalled client reads again, is told to reconnect, and resumes losing nothing.
        for sock, parser in stalled:
            events = await recv_events(sock, parser, until=lambda: False, timeout=30)
            got = assert_cut_with_a_retry_hint(events, parser, total)
            assert parser.last_id is not None
            rest = await resume_and_read(gateway, parser.last_id, total - got)
            assert_exactly(numbers_of(events) + numbers_of(rest), numbered(total))
        # Four resumes from four positions read almost all history again, in pages: a cache
        # bounded by page count alone would keep most of it (several times ``pushed``).
        after_resume = process.memory_info().rss - baseline
        print(f"; after 4 resumes +{after_resume / 2**20:.1f} MiB")
        assert after_resume < pushed / 2, f"RSS grew by {after_resume / 2**20:.1f} MiB"
    finally:
        for sock, _ in stalled:
            sock.close()
        await fast.stream.aclose()


async def test_a_client_that_never_reads_again_is_dropped_by_the_gateway(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env={**BUFFER_ENV, "SSE_SEND_TIMEOUT": "2"})
    sock, parser = await open_stalled(gateway)
    total = 400  # ~13 MB: more than the socket buffers hold, so the writes block
    try:
        async with Publisher.from_url(redis_url) as publisher:
            await publish_padded(publisher, range(total))
        deadline = time.monotonic() + 20
        while gateway.open_streams() != 0:
            assert time.monotonic() < deadline, "the stalled client was never dropped"
            await asyncio.sleep(0.1)
        # What reached its socket before the cut is intact; then the connection is closed.
        events = await recv_events(sock, parser, until=lambda: False, timeout=10)
        received = numbers_of(events)
        assert_exactly(received, numbered(len(received)))
        assert len(received) < total
        assert parser.last_id is not None
        rest = await resume_and_read(gateway, parser.last_id, total - len(received))
        assert_exactly(received + numbers_of(rest), numbered(total))
    finally:
        sock.close()
    assert httpx.get(f"{gateway.base_url}/readyz", timeout=5).status_code == 200
