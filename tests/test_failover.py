"""Two gateways behind Debian's nginx (the shipped config): one goes away, nobody notices.

Clients follow the stream through nginx and reconnect the way EventSource does (same
URL, ``Last-Event-ID``) while numbered events are published on two channels
throughout. One gateway dies with SIGKILL, or drains on SIGTERM; every client still
receives every event exactly once, in order, through the other one.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Callable

import pytest

from tests.support.assertions import (
    assert_cursors_never_move_backwards,
    assert_exactly,
    messages,
    numbered,
    publishing_in_background,
)
from tests.support.eventsource import EventSourceClient
from tests.support.nginx import NginxProcess
from tests.support.processes import GatewayProcess

CHANNELS = ("echo", "reverse_echo")
CLIENTS = 6
EVENTS = 240  # per channel
PUBLISH_INTERVAL = 0.01
GRACE_PERIOD = 5.0
SHUTDOWN_RETRY_MS = 250
GATEWAY_ENV = {
    "SSE_RETRY_MS": "200",  # keeps the SIGKILL reconnect quick; EventSource honours it
    "SSE_SHUTDOWN_RETRY_MS": str(SHUTDOWN_RETRY_MS),
    "SSE_SHUTDOWN_GRACE_PERIOD": str(GRACE_PERIOD),
}


@pytest.fixture
def cluster(
    gateway_factory: Callable[..., GatewayProcess],
    nginx_factory: Callable[[list[str]], NginxProcess],
) -> tuple[list[GatewayProcess], NginxProcess]:
    gateways = [gateway_factory(env=GATEWAY_ENV) for _ in range(2)]
    nginx = nginx_factory([f"127.0.0.1:{gateway.port}" for gateway in gateways])
    return gateways, nginx


async def open_streams(gateways: list[GatewayProcess]) -> list[int]:
    stats = await asyncio.gather(*(asyncio.to_thread(gateway.stats) for gateway in gateways))
    return [s["streams"]["open"] for s in stats]  # type: ignore[index]


async def wait_for_streams(gateways: list[GatewayProcess], total: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        counts = await open_streams(gateways)
        if sum(counts) == total or time.monotonic() > deadline:
            assert sum(counts) == total, f"open streams per gateway: {counts}, want {total}"
            return counts
        await asyncio.sleep(0.05)


async def wait_for_events(clients: list[EventSourceClient], count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while min(len(client.events) for client in clients) < count:
        assert time.monotonic() < deadline, "clients stopped receiving events"
        await asyncio.sleep(0.02)


def assert_every_event_once_in_order(client: EventSourceClient) -> None:
    assert_exactly(messages(client.events, "echo"), numbered(EVENTS))
    assert_exactly(messages(client.events, "reverse_echo"), numbered(EVENTS))
    assert_cursors_never_move_backwards(client.events)


async def stream_through_failover(
    gateways: list[GatewayProcess],
    nginx: NginxProcess,
    redis_url: str,
    stop: Callable[[GatewayProcess], None],
) -> tuple[list[EventSourceClient], GatewayProcess, int, float]:
    """Clients follow both channels; ``stop`` is applied to the busiest gateway midway.

    Returns the clients, the stopped gateway, how many streams it held, and the loop time
    at which it was stopped.
    """
    clients = [EventSourceClient(nginx.base_url, CHANNELS) for _ in range(CLIENTS)]
    followers = [asyncio.create_task(client.run(2 * EVENTS, timeout=60)) for client in clients]
    try:
        for client in clients:
            await client.wait_open(timeout=20)
        counts = await wait_for_streams(gateways, CLIENTS, timeout=10)
        # Any replica may hold any stream; stop the one that holds the most.
        victim = gateways[counts.index(max(counts))]
        survivor = gateways[1 - gateways.index(victim)]
        async with publishing_in_background(
            redis_url, CHANNELS, count=EVENTS, interval=PUBLISH_INTERVAL
        ) as publisher:
            await wait_for_events(clients, 2 * EVENTS // 4, timeout=30)
            stopped_at = asyncio.get_running_loop().time()
            stop(victim)
            await asyncio.gather(*followers)
            await publisher
        # The stopped gateway is gone, so every reconnect was served by this one.
        assert survivor.process.poll() is None
    finally:
        for follower in followers:
            follower.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
    return clients, victim, max(counts), stopped_at


async def test_sigkill_clients_resume_through_the_other_gateway_without_loss(
    cluster: tuple[list[GatewayProcess], NginxProcess], redis_url: str
) -> None:
    gateways, nginx = cluster

    def kill(gateway: GatewayProcess) -> None:
        gateway.process.kill()

    clients, victim, held, _ = await stream_through_failover(gateways, nginx, redis_url, kill)

    assert victim.wait(timeout=10) == -signal.SIGKILL
    for client in clients:
        assert_every_event_once_in_order(client)
    # Exactly the clients the killed gateway held had to reconnect, each once, and each
    # reconnect was answered (nginx skipped the dead replica instead of answering 502).
    reconnected = [client for client in clients if client.reconnects]
    assert len(reconnected) == held >= 1
    assert all(client.reconnects == 1 for client in reconnected)
    for client in clients:
        # No control event at all: a crash sends no goodbye, and history covered the gap.
        assert client.controls == []


async def test_sigterm_drains_with_a_retry_hint_and_clients_continue_without_loss(
    cluster: tuple[list[GatewayProcess], NginxProcess], redis_url: str
) -> None:
    gateways, nginx = cluster
    exit_status: dict[str, float] = {}
    waiters: list[threading.Thread] = []

    def terminate(gateway: GatewayProcess) -> None:
        signalled = time.monotonic()
        gateway.signal(signal.SIGTERM)

        def wait_for_exit() -> None:
            exit_status["status"] = gateway.wait(timeout=GRACE_PERIOD + 10)
            exit_status["after"] = time.monotonic() - signalled

        waiters.append(threading.Thread(target=wait_for_exit, daemon=True))
        waiters[0].start()

    clients, victim, held, stopped_at = await stream_through_failover(
        gateways, nginx, redis_url, terminate
    )

    await asyncio.to_thread(waiters[0].join, GRACE_PERIOD + 11)
    assert exit_status.get("status") == 0, victim.log()[-2000:]
    assert exit_status["after"] < GRACE_PERIOD, f"exited {exit_status['after']:.1f}s after SIGTERM"

    for client in clients:
        assert_every_event_once_in_order(client)
    drained = [client for client in clients if client.reconnects]
    assert len(drained) == held >= 1
    for client in drained:
        first = client.connections[0]
        # The last frames of a drained stream: a short retry hint, then the reconnect event.
        *_, hint, goodbye = first.frames
        assert hint.retry == SHUTDOWN_RETRY_MS
        assert goodbye.event == "reconnect"
        assert json.loads(goodbye.data) == {"reason": "shutdown", "retry_ms": SHUTDOWN_RETRY_MS}
        assert goodbye.id == client.connections[1].frames[0].id, "resumed where it closed"
        assert first.ended_at is not None
        assert first.ended_at - stopped_at < GRACE_PERIOD
        assert client.retry_ms != SHUTDOWN_RETRY_MS, "the next stream restores the normal retry"
        assert client.controls == [goodbye]
