"""Stalled clients resuming from a long history: what they may cost the gateway.

A client that asks for a channel's whole history and never reads costs the gateway its
write buffer, not the history: replay writes in bounded pieces and waits for the socket
to drain before rendering more, and history pages stay shared between streams. The
full-size figures (500 stalled resumers of 3,000 x 10 KB) come from
``python -m bench.hostile``; this test has the same shape at a size the suite affords.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from contract.events import Echo, EchoPayload
from producers.publisher import Publisher
from tests.support.processes import GatewayProcess
from tests.support.stalled import GatewayFootprint, close_all, healthz_seconds, stalled_resumers

CHANNEL = "hist"
EVENTS = 600
"""More than one history page (500 entries): a stalled stream sits in its first page."""
PAD = "x" * 10_000
STALLED = 40
MIB = 2**20

GatewayFactory = Callable[..., GatewayProcess]


async def publish_history(redis_url: str, count: int) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        for n in range(count):
            data = Echo(data=EchoPayload(message=f"msg-{n} {PAD}")).encode_data()
            await publisher.publish_raw(CHANNEL, "echo", data)


async def wait_for_streams(gateway: GatewayProcess, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (await asyncio.to_thread(gateway.open_streams)) != count:
        assert time.monotonic() < deadline, f"never {count} open streams"
        await asyncio.sleep(0.1)


async def test_stalled_resumers_of_a_long_history_cost_at_most_their_write_buffer(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    # A send timeout longer than the test: the stalled streams stay open while measured.
    gateway = gateway_factory(env={"SSE_SEND_TIMEOUT": "600"})
    await publish_history(redis_url, EVENTS)
    footprint = GatewayFootprint.of(gateway.pid)
    baseline = await footprint.settle()

    sockets = stalled_resumers(gateway.port, [CHANNEL], STALLED, last_event_id="earliest")
    try:
        await wait_for_streams(gateway, STALLED)
        peak = baseline
        for _ in range(5):  # the replays run into full sockets; /healthz answers meanwhile
            assert await healthz_seconds(gateway.base_url) < 1
            peak = max(peak, footprint.rss)
            await asyncio.sleep(0.5)
        peak = max(peak, await footprint.settle())
        growth = peak - baseline
        print(
            f"\n{STALLED} stalled resumers of {EVENTS} x 10 KB: RSS {baseline / MIB:.0f} -> "
            f"{peak / MIB:.0f} MiB, {growth / STALLED / 1024:.0f} KiB per stream",
            end="",
        )
        # Before: a rendered 5 MB page and its framed copy per stream (~10 MB each).
        assert growth <= STALLED * MIB, f"{growth / STALLED / MIB:.1f} MiB per stalled stream"
    finally:
        close_all(sockets)
    await wait_for_streams(gateway, 0)
    after = await footprint.settle()
    print(f"; after they left {after / MIB:.0f} MiB", end="")
    assert after - baseline <= max(growth, 8 * MIB)


async def wait_for_fds(footprint: GatewayFootprint, at_most: int, timeout: float) -> float:
    """Seconds until the gateway holds at most ``at_most`` descriptors."""
    started = time.monotonic()
    while footprint.fds > at_most:
        assert time.monotonic() - started < timeout, (
            f"the gateway still holds {footprint.fds} descriptors, {at_most} expected"
        )
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_streams_cut_by_the_send_timeout_release_their_sockets_at_once(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env={"SSE_SEND_TIMEOUT": "1"})
    await publish_history(redis_url, EVENTS)
    footprint = GatewayFootprint.of(gateway.pid)
    baseline = footprint.fds
    sockets = stalled_resumers(gateway.port, [CHANNEL], STALLED, last_event_id="earliest")
    try:
        await wait_for_streams(gateway, STALLED)
        assert footprint.fds >= baseline + STALLED
        # Cut by the send timeout: the streams end, and their sockets with them, while
        # the clients still hold theirs open.
        await wait_for_streams(gateway, 0)
        released = await wait_for_fds(footprint, baseline + 2, timeout=5)
        print(f"\n{STALLED} cut streams' sockets released {released:.2f} s after their end")
    finally:
        close_all(sockets)
    log = gateway.log()
    assert "Traceback" not in log, log[-3000:]


async def test_rounds_of_cut_stalled_clients_never_pile_up_sockets(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    # Before: with SSE_MAX_STREAMS=100, three rounds of 100 stalled clients took the
    # gateway's fds 118 -> 218 -> 318 while open streams never exceeded 100.
    limit = 10
    gateway = gateway_factory(env={"SSE_SEND_TIMEOUT": "1", "SSE_MAX_STREAMS": str(limit)})
    await publish_history(redis_url, EVENTS)
    footprint = GatewayFootprint.of(gateway.pid)
    baseline = footprint.fds
    held = []
    try:
        for _ in range(3):
            held += stalled_resumers(gateway.port, [CHANNEL], limit, last_event_id="earliest")
            await wait_for_streams(gateway, 0)
            await wait_for_fds(footprint, baseline + 2, timeout=5)
    finally:
        close_all(held)
