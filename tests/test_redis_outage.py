"""Redis outages: connected clients stay connected and miss nothing; readiness tells the truth.

Publishers keep publishing through the outage (they retry); the gateway reconnects with
backoff, re-subscribes and backfills every channel from history, so each client receives
every entry of its channels exactly once and in order, without reconnecting itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from contract.backoff import Backoff
from producers.publisher import Publisher
from tests.support.assertions import numbered, publish_numbered
from tests.support.processes import GatewayProcess, ProducerProcess
from tests.support.raw_sse import RawStream
from tests.support.redis_server import RedisServer
from tests.support.tracking import Received, channel_history, compare

NUMBERED = "echo"  # numbered events from this test process: the order is checkable
PRODUCED = "produced"  # a real producer process with --count
PRODUCED_COUNT = 120
FAST_RECOVERY = {"SSE_REDIS_BACKOFF_MAX": "0.5"}
"""Reconnect within half a second of Redis returning, to keep the test short."""

GatewayFactory = Callable[..., GatewayProcess]
ProducerFactory = Callable[..., ProducerProcess]


@dataclass
class Client:
    """One SSE connection read in a background task for the whole test."""

    received: Received
    stream: RawStream
    task: asyncio.Task[None] | None = None
    started: bool = False
    closed: bool = False

    @classmethod
    async def connect(cls, gateway: GatewayProcess, channels: Sequence[str]) -> Client:
        client = cls(Received(channels), await RawStream.open(gateway.port, channels))
        client.task = asyncio.create_task(client._pump())
        await wait_until(lambda: client.stream.parser.opening_id is not None, 10, "stream opened")
        return client

    async def _pump(self) -> None:
        while (events := await self.stream.read()) is not None:
            if events and not self.started:
                opening = self.stream.parser.opening_id
                assert opening is not None
                self.received.start(opening)
                self.started = True
            for event in events:
                self.received.add(event)
        self.closed = True

    def has(self, per_channel: dict[str, int]) -> bool:
        """Whether at least this many entries arrived on each of its channels."""
        entries = self.received.entries
        return all(len(entries[ch]) >= n for ch, n in per_channel.items() if ch in entries)

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.stream.aclose()


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        await asyncio.sleep(0.05)


async def get_json(url: str) -> tuple[int, Any]:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url)
        return response.status_code, response.json()


async def wait_ready_status(gateway: GatewayProcess, status: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (await get_json(f"{gateway.base_url}/readyz"))[0] != status:
        assert time.monotonic() < deadline, f"/readyz never answered {status}"
        await asyncio.sleep(0.05)


async def redis_stats(gateway: GatewayProcess) -> dict[str, Any]:
    redis: dict[str, Any] = (await get_json(f"{gateway.base_url}/stats"))[1]["redis"]
    return redis


async def publish_until(publisher: Publisher, stop: asyncio.Event) -> int:
    """Numbered events every 10 ms until ``stop``; returns how many were published."""
    count = 0
    while not stop.is_set():
        await publish_numbered(publisher, NUMBERED, [count])
        count += 1
        await asyncio.sleep(0.01)
    return count


async def restart_redis(redis_server: RedisServer, gateway: GatewayProcess) -> None:
    """SIGTERM redis-server (AOF flushed), keep it down a while, start it on the same port."""
    await asyncio.to_thread(redis_server.stop)
    await wait_ready_status(gateway, 503, timeout=15)
    await asyncio.sleep(1.0)  # publishers are retrying meanwhile
    await wait_ready_status(gateway, 503, timeout=1)
    await asyncio.to_thread(redis_server.start)
    await wait_ready_status(gateway, 200, timeout=30)


async def kill_pubsub_connection(redis_server: RedisServer, gateway: GatewayProcess) -> None:
    """CLIENT KILL the gateway's pub/sub connection, three times, while events flow."""
    async with Redis.from_url(redis_server.url) as redis:
        for _ in range(3):
            before = (await redis_stats(gateway))["reconnects"]
            killed = await redis.client_kill_filter(_type="pubsub")
            assert killed == 1, f"expected the gateway's one pub/sub connection, killed {killed}"
            deadline = time.monotonic() + 15
            while (stats := await redis_stats(gateway))["reconnects"] == before or not stats[
                "connected"
            ]:
                assert time.monotonic() < deadline, "the hub did not reconnect"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
    await wait_ready_status(gateway, 200, timeout=10)


Fault = Callable[[RedisServer, GatewayProcess], Awaitable[None]]


@pytest.mark.parametrize(
    "fault", [restart_redis, kill_pubsub_connection], ids=["redis-restart", "client-kill"]
)
async def test_connected_clients_get_every_event_once_in_order_through_a_redis_fault(
    redis_server: RedisServer,
    gateway_factory: GatewayFactory,
    producer_factory: ProducerFactory,
    fault: Fault,
) -> None:
    gateway = gateway_factory(env=FAST_RECOVERY)
    subscriptions = [[NUMBERED], [NUMBERED], [NUMBERED, PRODUCED], [PRODUCED]]
    clients = [await Client.connect(gateway, channels) for channels in subscriptions]
    stop = asyncio.Event()
    try:
        async with Publisher.from_url(redis_server.url, backoff=Backoff(0.05, 0.5)) as publisher:
            publishing = asyncio.create_task(publish_until(publisher, stop))
            producer = producer_factory(
                "echo", message="hi", interval=0.05, count=PRODUCED_COUNT, channel=PRODUCED
            )
            await asyncio.sleep(1.5)
            await fault(redis_server, gateway)
            await asyncio.sleep(1.0)
            stop.set()
            published = await publishing
            assert await asyncio.to_thread(producer.wait, 60) == 0

        async with Redis.from_url(redis_server.url) as redis:
            expected = {c: await channel_history(redis, c) for c in (NUMBERED, PRODUCED)}
        # History is the ground truth; check it holds what was published, then that
        # every client got exactly it.
        assert [json.loads(d)["message"] for _, d in expected[NUMBERED]] == numbered(published)
        assert len(expected[PRODUCED]) == PRODUCED_COUNT
        total = {c: len(entries) for c, entries in expected.items()}
        await wait_until(
            lambda: all(c.closed or c.has(total) for c in clients), 30, "clients to catch up"
        )
        for client in clients:
            assert not client.closed, f"client on {client.received.channels} was disconnected"
            assert not client.received.controls, [c.event for c in client.received.controls]
            for channel in client.received.channels:
                result = compare(client.received.entries[channel], expected[channel])
                assert result.exact, f"{client.received.channels}/{channel}: {result}"
    finally:
        stop.set()
        for client in clients:
            await client.aclose()


async def test_redis_restarted_empty_sends_a_lost_gap_per_channel_then_the_new_history(
    redis_server: RedisServer, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env=FAST_RECOVERY)
    subscriptions = [["echo"], ["echo", "reverse_echo"], ["echo", "quiet"]]
    clients = [await Client.connect(gateway, channels) for channels in subscriptions]
    busy = ("echo", "reverse_echo")  # "quiet" never has an event: it loses nothing

    def caught_up(per_channel: int) -> Callable[[], bool]:
        return lambda: all(c.has(dict.fromkeys(busy, per_channel)) for c in clients)

    try:
        async with Publisher.from_url(redis_server.url) as publisher:
            for channel in busy:
                await publish_numbered(publisher, channel, range(5), reverse=channel != "echo")
        await wait_until(caught_up(5), 15, "the first events")
        before = {channel: clients[1].received.entries[channel][-1][0] for channel in busy}
        await asyncio.to_thread(redis_server.restart, empty=True)
        await wait_ready_status(gateway, 200, timeout=30)
        async with Publisher.from_url(redis_server.url) as publisher:
            for channel in busy:
                await publish_numbered(
                    publisher, channel, range(100, 105), reverse=channel != "echo"
                )
        async with Redis.from_url(redis_server.url) as redis:
            new_ids = {
                c: [entry_id for entry_id, _ in await channel_history(redis, c)] for c in busy
            }
        await wait_until(caught_up(10), 30, "the events after the restart")

        for client in clients:
            assert not client.closed, f"client on {client.received.channels} was disconnected"
            affected = sorted(ch for ch in client.received.channels if ch in busy)
            gaps = []
            for control in client.received.controls:
                assert control.event.event == "history_gap", control.event
                gap = json.loads(control.event.data)
                # Announced after the old events of its channel and before the new ones.
                assert control.seen[gap["channel"]] == 5, (gap, control.seen)
                gaps.append((gap["channel"], gap["reason"], gap["requested"]))
            assert sorted(gaps) == [(ch, "lost", before[ch]) for ch in affected]
            for channel in affected:
                entries = client.received.entries[channel]
                messages = [json.loads(data)["message"] for _, data in entries]
                expected = numbered(5) + numbered(5, start=100)
                assert messages == expected, (client.received.channels, channel)
                assert [entry_id for entry_id, _ in entries[5:]] == new_ids[channel]
    finally:
        for client in clients:
            await client.aclose()
