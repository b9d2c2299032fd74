"""The chaos run: about a minute of everything going wrong at once, and nothing lost.

Two gateways, both producer processes and a numbered publisher, 50 clients that drop
their connection at random and resume with their last id, sometimes on the other
gateway. Midway one gateway is restarted (SIGTERM, then a new one on the same port) and
the Redis pub/sub connections are killed. At the end every client must hold every entry
of its channels exactly once and in order. The figures are printed (``pytest -s``) and
written as JSON to ``$CHAOS_REPORT`` when set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from contract.backoff import Backoff
from producers.publisher import Publisher
from tests.support.assertions import numbered, publish_numbered
from tests.support.processes import GatewayProcess, ProducerProcess
from tests.support.raw_sse import ProtocolError, RawStream
from tests.support.redis_server import RedisServer
from tests.support.tracking import Delivered, Received, channel_history, compare

pytestmark = pytest.mark.chaos

PUBLISH_SECONDS = 36.0
PRODUCER_INTERVAL = 0.1
PRODUCER_COUNT = int(PUBLISH_SECONDS / PRODUCER_INTERVAL)
NUMBERED_INTERVAL = 0.02
CLIENTS = 50
SUBSCRIPTIONS = [
    ["echo"],
    ["reverse_echo"],
    ["numbered"],
    ["echo", "numbered"],
    ["echo", "numbered", "reverse_echo"],
]
CHAOS_ENV = {"SSE_REDIS_BACKOFF_MAX": "0.5"}

GatewayFactory = Callable[..., GatewayProcess]
ProducerFactory = Callable[..., ProducerProcess]


@dataclass
class Figures:
    """What happened, for the printout and the README."""

    published: dict[str, int] = field(default_factory=dict)
    delivered: int = 0
    expected_deliveries: int = 0
    client_drops: int = 0
    server_closes: int = 0
    switches: int = 0
    refused: int = 0
    faults: list[str] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    out_of_order_clients: int = 0
    gap_events: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "events_published": sum(self.published.values()),
            "published_per_channel": self.published,
            "clients": CLIENTS,
            "deliveries_expected": self.expected_deliveries,
            "deliveries": self.delivered,
            "reconnects": self.client_drops + self.server_closes,
            "client_drops": self.client_drops,
            "server_closes": self.server_closes,
            "gateway_switches": self.switches,
            "connects_refused": self.refused,
            "faults": self.faults,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "clients_out_of_order": self.out_of_order_clients,
            "history_gap_events": self.gap_events,
            "seconds": round(self.seconds, 1),
        }


@dataclass
class ChaosClient:
    """Connects, reads a while, drops the connection, resumes with its last id: repeat."""

    index: int
    channels: Sequence[str]
    ports: Sequence[int]
    figures: Figures
    rng: random.Random
    received: Received = field(init=False)
    cursor: str = "earliest"

    def __post_init__(self) -> None:
        self.received = Received(self.channels)

    def complete(self, expected: dict[str, list[Delivered]]) -> bool:
        return all(len(self.received.entries[c]) >= len(expected[c]) for c in self.channels)

    async def run(self, final: asyncio.Future[dict[str, list[Delivered]]]) -> None:
        home = self.index % len(self.ports)
        port = self.ports[home]
        while not (final.done() and self.complete(final.result())):
            try:
                stream = await RawStream.open(port, self.channels, last_event_id=self.cursor)
            except OSError:
                # That gateway is restarting: come back, perhaps on the other one.
                self.figures.refused += 1
                await asyncio.sleep(self.rng.uniform(0.05, 0.3))
                port = self._pick(home)
                continue
            try:
                closed_by_server = await self._session(stream, final)
            finally:
                stream.abort()
            if stream.last_id is not None:
                self.cursor = stream.last_id
            if closed_by_server:
                self.figures.server_closes += 1
                retry = stream.parser.retry or 1000
                await asyncio.sleep(min(retry, 1000) / 1000)
            elif not (final.done() and self.complete(final.result())):
                self.figures.client_drops += 1
                await asyncio.sleep(self.rng.uniform(0, 0.2))
            new_port = self._pick(home)
            self.figures.switches += new_port != port
            port = new_port

    def _pick(self, home: int) -> int:
        if self.rng.random() < 0.3:
            return self.ports[(home + 1) % len(self.ports)]
        return self.ports[home]

    async def _session(
        self, stream: RawStream, final: asyncio.Future[dict[str, list[Delivered]]]
    ) -> bool:
        """Read until a random moment (or, at the end, until complete); True if the server
        ended the stream first."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self.rng.uniform(0.2, 4.0)
        started = False
        while True:
            if final.done():
                if self.complete(final.result()):
                    return False
                until = max(until, loop.time() + 1.0)  # no more drops: finish the job
            remaining = until - loop.time()
            if remaining <= 0:
                return False
            try:
                events = await asyncio.wait_for(stream.read(), remaining)
            except TimeoutError:
                continue
            except (OSError, ProtocolError):
                return True  # reset by a gateway going away, or refused while it stops
            if events is None:
                return True
            if events and not started:
                assert stream.parser.opening_id is not None
                self.received.start(stream.parser.opening_id)
                started = True
            for event in events:
                self.received.add(event)


async def publish_numbered_for(publisher: Publisher, seconds: float) -> int:
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await publish_numbered(publisher, "numbered", [count])
        count += 1
        await asyncio.sleep(NUMBERED_INTERVAL)
    return count


async def restart_gateway(
    gateway: GatewayProcess, gateway_factory: GatewayFactory
) -> GatewayProcess:
    """SIGTERM (the gateway tells its clients to reconnect), then a new one on its port."""
    code = await asyncio.to_thread(gateway.stop)
    assert code == 0, f"gateway exited with {code} on SIGTERM"
    restarted: GatewayProcess = await asyncio.to_thread(
        gateway_factory, env=CHAOS_ENV, port=gateway.port
    )
    return restarted


def report(figures: Figures) -> None:
    data = figures.as_dict()
    print("\nchaos run figures:")
    for key, value in data.items():
        print(f"  {key}: {value}")
    path = os.environ.get("CHAOS_REPORT")
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


async def test_chaos_every_client_ends_with_every_event_exactly_once_in_order(
    redis_server: RedisServer,
    gateway_factory: GatewayFactory,
    producer_factory: ProducerFactory,
) -> None:
    began = time.monotonic()
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "5")))
    figures = Figures()
    gateways = [gateway_factory(env=CHAOS_ENV) for _ in range(2)]
    ports = [g.port for g in gateways]
    final: asyncio.Future[dict[str, list[Delivered]]] = asyncio.get_running_loop().create_future()
    clients = [
        ChaosClient(i, SUBSCRIPTIONS[i % len(SUBSCRIPTIONS)], ports, figures, rng)
        for i in range(CLIENTS)
    ]
    running = [asyncio.create_task(c.run(final)) for c in clients]
    try:
        producers = [
            producer_factory("echo", interval=PRODUCER_INTERVAL, count=PRODUCER_COUNT),
            producer_factory("reverse-echo", interval=PRODUCER_INTERVAL, count=PRODUCER_COUNT),
        ]
        async with Publisher.from_url(redis_server.url, backoff=Backoff(0.05, 0.5)) as publisher:
            numbered_publishing = asyncio.create_task(
                publish_numbered_for(publisher, PUBLISH_SECONDS)
            )
            await asyncio.sleep(PUBLISH_SECONDS * 0.3)
            async with Redis.from_url(redis_server.url) as redis:
                killed = await redis.client_kill_filter(_type="pubsub")
            assert killed == 2, f"expected both gateways' pub/sub connections, killed {killed}"
            figures.faults.append("redis pub/sub connections killed (CLIENT KILL TYPE pubsub)")
            await asyncio.sleep(PUBLISH_SECONDS * 0.25)
            gateways[0] = await restart_gateway(gateways[0], gateway_factory)
            figures.faults.append("gateway restarted (SIGTERM, new process on the same port)")
            published_numbered = await numbered_publishing
        for producer in producers:
            assert await asyncio.to_thread(producer.wait, 60) == 0, producer.log()[-2000:]

        async with Redis.from_url(redis_server.url) as redis:
            expected = {
                c: await channel_history(redis, c) for c in ("echo", "reverse_echo", "numbered")
            }
        # History is the ground truth: it holds exactly what was published.
        messages = [json.loads(data)["message"] for _, data in expected["numbered"]]
        assert messages == numbered(published_numbered)
        assert len(expected["echo"]) == len(expected["reverse_echo"]) == PRODUCER_COUNT
        figures.published = {c: len(entries) for c, entries in expected.items()}
        final.set_result(expected)
        done, pending = await asyncio.wait(running, timeout=60)
        for task in done:
            task.result()  # a client that crashed fails the run with its own error
        assert not pending, f"{len(pending)} clients did not get all events in time"
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    problems = []
    for client in clients:
        gaps = [c.event for c in client.received.controls if c.event.event != "reconnect"]
        figures.gap_events += len(gaps)
        if gaps:
            problems.append(f"client {client.index} got {gaps[:2]}")
        for channel in client.channels:
            result = compare(client.received.entries[channel], expected[channel])
            figures.expected_deliveries += result.expected
            figures.delivered += result.received
            figures.lost += result.lost
            figures.duplicated += result.duplicated
            if not result.exact:
                figures.out_of_order_clients += not result.in_order
                problems.append(f"client {client.index} on {channel}: {result}")
    figures.seconds = time.monotonic() - began
    report(figures)
    assert not problems, "\n".join(problems[:20])
    assert figures.delivered == figures.expected_deliveries
    assert figures.client_drops > CLIENTS, "the clients hardly reconnected: no chaos"
    assert figures.server_closes > 0, "nobody was on the restarted gateway"
