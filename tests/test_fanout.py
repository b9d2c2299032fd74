"""The fan-out's groups: clients that keep up are written in one loop per flush.

Clients on the same channels at the same positions join the group of those channels
(one channel or several). While there, a client's position is the group's; these
tests check that it is handed back exactly whenever the client's own stream must
act again: when the gateway closes the stream (the ``reconnect`` frame carries the
cursor of the last event the client got), after a Redis reconnect, and when the
client resumes from it.
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
    assert_cursors_never_move_backwards,
    assert_exactly,
    channel_events,
    cursor_positions,
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


async def wait_grouped(gateway: GatewayProcess, count: int) -> None:
    """Until ``count`` sinks are written by groups (streams join once their task is idle)."""
    deadline = asyncio.get_running_loop().time() + 20
    while (grouped := hub_stats(gateway)["grouped"]) != count:
        assert asyncio.get_running_loop().time() < deadline, f"{grouped} grouped, not {count}"
        await asyncio.sleep(0.05)


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


async def test_clients_in_step_are_grouped_and_get_every_event_once(
    redis_url: str, gateway: GatewayProcess
) -> None:
    async with clients(gateway) as (solo, multi):
        # Live starts are at the channels' tips: in step before the first event.
        await wait_grouped(gateway, SOLO_CLIENTS + 2)
        await publish_spaced(redis_url, range(EVENTS))
        for stream in [*solo, multi]:
            events = channel_events(await stream.take(EVENTS, timeout=20))
            assert_exactly(messages(events, "echo"), numbered(EVENTS))
        hub = hub_stats(gateway)
        # The two-channel client is written by its own group (both its sinks count).
        assert hub["subscribers"] == SOLO_CLIENTS + 2
        assert hub["grouped"] == SOLO_CLIENTS + 2
        assert hub["groups"] == 2


async def wait_tasks_at_most(gateway: GatewayProcess, most: int) -> None:
    deadline = asyncio.get_running_loop().time() + 20
    while (tasks := gateway.stats()["tasks"]) > most:
        assert asyncio.get_running_loop().time() < deadline, f"{tasks} tasks, not <= {most}"
        await asyncio.sleep(0.05)


async def test_grouped_clients_hold_no_task_until_they_must_act(
    redis_url: str, gateway: GatewayProcess
) -> None:
    # A stream in a group only waits while the flush writes it: its task ends, and the
    # stream gets one again when it must act (here: its client leaves, it is ended).
    async with sse_connect(gateway.base_url, channels=["warmup"]) as stream:
        await stream.wait_for_opening(timeout=10)
    await wait_grouped(gateway, 0)
    baseline = gateway.stats()["tasks"]
    async with clients(gateway) as (solo, multi):
        await wait_grouped(gateway, SOLO_CLIENTS + 2)
        await wait_tasks_at_most(gateway, baseline)
        await publish_spaced(redis_url, range(EVENTS))
        for stream in [*solo, multi]:
            events = channel_events(await stream.take(EVENTS, timeout=20))
            assert_exactly(messages(events, "echo"), numbered(EVENTS))
        await wait_tasks_at_most(gateway, baseline)
        assert gateway.stats()["streams"]["open"] == SOLO_CLIENTS + 1
    deadline = asyncio.get_running_loop().time() + 20
    while (stats := gateway.stats())["streams"]["open"] or stats["hub"]["subscribers"]:
        assert asyncio.get_running_loop().time() < deadline, stats
        await asyncio.sleep(0.05)
    assert stats["stream_ends"]["closed"]["disconnect"] == SOLO_CLIENTS + 2  # with the warm-up
    await wait_tasks_at_most(gateway, baseline)


async def test_a_grouped_client_is_told_its_exact_cursor_when_the_gateway_closes(
    redis_url: str, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(env={"SSE_SHUTDOWN_RETRY_MS": "300"})
    async with clients(gateway) as (solo, _):
        await publish_spaced(redis_url, range(EVENTS))
        last_ids = []
        for stream in solo:
            events = await stream.take(EVENTS, timeout=20)
            last_ids.append(events[-1].id)
        await wait_grouped(gateway, SOLO_CLIENTS + 2)
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


async def test_a_reconnect_to_redis_ungroups_every_client_and_loses_nothing(
    redis_url: str, gateway: GatewayProcess, redis_client: Redis
) -> None:
    async with clients(gateway) as (solo, multi):
        await publish_spaced(redis_url, range(10))
        await wait_grouped(gateway, SOLO_CLIENTS + 2)
        killed = await redis_client.client_kill_filter(_type="pubsub")
        assert killed == 1
        # Published while the hub reconnects: the clients get it from history.
        await publish_spaced(redis_url, range(10, EVENTS))
        for stream in [*solo, multi]:
            events = channel_events(await stream.take(EVENTS, timeout=20))
            assert_exactly(messages(events, "echo"), numbered(EVENTS))
        # Back in step after the backfill: grouped again at the next live events (the
        # two-channel client once both channels have shown their newest id live again).
        async with Publisher.from_url(redis_url) as publisher:
            await publish_numbered(publisher, "elsewhere", [0])
        await publish_spaced(redis_url, range(EVENTS, EVENTS + 3))
        for stream in solo:
            await stream.take(3, timeout=20)
        await multi.take(4, timeout=20)
        await wait_grouped(gateway, SOLO_CLIENTS + 2)


async def test_two_channel_clients_in_lockstep_get_both_channels_with_exact_cursors(
    redis_url: str, gateway: GatewayProcess
) -> None:
    channels = [CHANNEL, "elsewhere"]
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(sse_connect(gateway.base_url, channels=channels))
            for _ in range(4)
        ]
        async with Publisher.from_url(redis_url) as publisher:
            for number in range(EVENTS):
                # Both channels in one flush, then one of them: the cursor carries both.
                await publish_numbered(publisher, CHANNEL, [number])
                await publish_numbered(publisher, "elsewhere", [number], reverse=True)
                await asyncio.sleep(0.01)
        received = [await stream.take(2 * EVENTS, timeout=20) for stream in streams]
        await wait_grouped(gateway, 2 * len(streams))
        for events in received:
            assert_exactly(messages(events, "echo"), numbered(EVENTS))
            assert_exactly(messages(events, "reverse_echo"), numbered(EVENTS))
            assert_cursors_never_move_backwards(events)
        # Every client saw the same frames: one render for all of them.
        assert all(
            [(e.id, e.data) for e in events] == [(e.id, e.data) for e in received[0]]
            for events in received
        )
        last_id = received[0][-1].id
        assert last_id is not None
        assert set(cursor_positions(last_id)) == set(channels)

    # Resuming from the last cursor misses nothing and repeats nothing on either channel.
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "elsewhere", [EVENTS], reverse=True)
        await publish_numbered(publisher, CHANNEL, [EVENTS])
    async with sse_connect(gateway.base_url, channels=channels, last_event_id=last_id) as again:
        events = await again.take(2, timeout=20)
    assert messages(events, "reverse_echo") == messages(events, "echo") == [f"msg-{EVENTS}"]
