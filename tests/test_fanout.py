"""The fan-out's fast lane: clients on one channel that keep up are written in one loop.

While seated, a client's position lives in the fan-out, not in its own feed; these
tests check that it is handed back exactly whenever the client's own stream must
act again: when the gateway closes the stream (the ``reconnect`` frame carries the
cursor of the last event the client got), and when the client resumes from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Callable

from redis.asyncio import Redis

from producers.publisher import Publisher
from tests.support.assertions import (
    assert_exactly,
    channel_events,
    messages,
    numbered,
    publish_numbered,
)
from tests.support.processes import GatewayProcess
from tests.support.sse import SSEStream, sse_connect

CHANNEL = "lane"
SOLO_CLIENTS = 6
EVENTS = 30


def hub_stats(gateway: GatewayProcess) -> dict[str, int]:
    hub = gateway.stats()["hub"]
    assert isinstance(hub, dict)
    return hub


async def publish_spaced(redis_url: str, numbers: range) -> None:
    """One event per flush: every client has the chance to take its seat between them."""
    async with Publisher.from_url(redis_url) as publisher:
        for number in numbers:
            await publish_numbered(publisher, CHANNEL, [number])
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def clients(gateway: GatewayProcess) -> AsyncIterator[tuple[list[SSEStream], SSEStream]]:
    """Six clients on the channel alone, one on it and another channel."""
    async with contextlib.AsyncExitStack() as stack:
        solo = [
            await stack.enter_async_context(sse_connect(gateway.base_url, channels=[CHANNEL]))
            for _ in range(SOLO_CLIENTS)
        ]
        multi = await stack.enter_async_context(
            sse_connect(gateway.base_url, channels=[CHANNEL, "elsewhere"])
        )
        yield solo, multi


async def test_clients_in_step_are_seated_and_get_every_event_once(
    redis_url: str, gateway: GatewayProcess
) -> None:
    async with clients(gateway) as (solo, multi):
        assert hub_stats(gateway)["seated"] == 0  # nobody is in step before the first event
        await publish_spaced(redis_url, range(EVENTS))
        for stream in [*solo, multi]:
            events = channel_events(await stream.take(EVENTS, timeout=20))
            assert_exactly(messages(events, "echo"), numbered(EVENTS))
        hub = hub_stats(gateway)
        # The two-channel client renders its own cursors: it never takes a seat.
        assert hub["subscribers"] == SOLO_CLIENTS + 2
        assert hub["seated"] == SOLO_CLIENTS


async def test_a_seated_client_is_told_its_exact_cursor_when_the_gateway_closes(
    redis_url: str, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(env={"SSE_SHUTDOWN_RETRY_MS": "300"})
    async with clients(gateway) as (solo, _):
        await publish_spaced(redis_url, range(EVENTS))
        last_ids = []
        for stream in solo:
            events = await stream.take(EVENTS, timeout=20)
            last_ids.append(events[-1].id)
        assert hub_stats(gateway)["seated"] == SOLO_CLIENTS
        gateway.signal(signal.SIGTERM)
        for stream, last_id in zip(solo, last_ids, strict=True):
            goodbye = [f for f in await stream.drain(timeout=20) if f.has_data][-1]
            assert goodbye.event == "reconnect"
            assert json.loads(goodbye.data)["reason"] == "shutdown"
            assert goodbye.id == last_id
    assert await asyncio.to_thread(lambda: gateway.wait(timeout=20)) == 0

    # Resuming from that cursor on a new process gives exactly what came after it.
    successor = gateway_factory()
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, CHANNEL, range(EVENTS, EVENTS + 5))
    async with sse_connect(
        successor.base_url, channels=[CHANNEL], last_event_id=last_ids[0]
    ) as resumed:
        events = channel_events(await resumed.take(5, timeout=20))
    assert_exactly(messages(events, "echo"), numbered(5, start=EVENTS))


async def test_a_reconnect_to_redis_unseats_every_client_and_loses_nothing(
    redis_url: str, gateway: GatewayProcess, redis_client: Redis
) -> None:
    async with clients(gateway) as (solo, multi):
        await publish_spaced(redis_url, range(10))
        assert hub_stats(gateway)["seated"] == SOLO_CLIENTS
        killed = await redis_client.client_kill_filter(_type="pubsub")
        assert killed == 1
        # Published while the hub reconnects: the clients get it from history.
        await publish_spaced(redis_url, range(10, EVENTS))
        for stream in [*solo, multi]:
            events = channel_events(await stream.take(EVENTS, timeout=20))
            assert_exactly(messages(events, "echo"), numbered(EVENTS))
        # Back in step after the backfill: seated again at the next live events.
        await publish_spaced(redis_url, range(EVENTS, EVENTS + 3))
        for stream in solo:
            await stream.take(3, timeout=20)
        assert hub_stats(gateway)["seated"] == SOLO_CLIENTS
