"""Clients come and go; the gateway keeps no subscription, task or sink of theirs."""

from __future__ import annotations

import asyncio
import time

import httpx
from redis.asyncio import Redis

from producers.publisher import Publisher
from tests.support.assertions import publish_numbered
from tests.support.sse import sse_connect


def stats(gateway) -> dict:
    return httpx.get(f"{gateway.base_url}/stats", timeout=10).json()


async def wait_until_idle(gateway, baseline_tasks: int, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        current = stats(gateway)
        idle = (
            current["streams"]["open"] == 0
            and current["hub"]["subscribers"] == 0
            and current["hub"]["channels"] == 0
            and current["tasks"] <= baseline_tasks
        )
        if idle or time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.1)


async def test_clients_that_leave_leave_nothing_behind(
    redis_url: str, redis_client: Redis, gateway
) -> None:
    # Warm-up: the first stream starts sse-starlette's one shutdown watcher per loop.
    async with sse_connect(gateway.base_url, channels=["warmup"]) as stream:
        await stream.wait_for_opening(timeout=10)
    baseline = (await wait_until_idle(gateway, baseline_tasks=10**6))["tasks"]

    async def visit(i: int, publisher: Publisher) -> None:
        channels = ["echo", f"room-{i % 7}"] if i % 3 else [f"solo-{i}"]
        async with sse_connect(gateway.base_url, channels=channels) as stream:
            await stream.wait_for_opening(timeout=10)
            if i % 2:
                await publish_numbered(publisher, channels[0], [i])
                await stream.take(1, timeout=10)

    async with Publisher.from_url(redis_url) as publisher:
        for round_ in range(3):
            await asyncio.gather(*(visit(round_ * 40 + i, publisher) for i in range(40)))

    after = await wait_until_idle(gateway, baseline)
    assert after["streams"] == {"open": 0, "total": 121}
    assert after["hub"]["subscribers"] == 0
    assert after["hub"]["channels"] == 0
    assert after["tasks"] <= baseline, f"tasks grew from {baseline} to {after['tasks']}"
    assert await redis_client.pubsub_channels("sse:*") == []


async def test_a_client_cut_mid_stream_is_cleaned_up(
    redis_url: str, redis_client: Redis, gateway
) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        client = httpx.AsyncClient(timeout=10)
        request = client.build_request("GET", f"{gateway.base_url}/sse?channel=echo&channel=busy")
        response = await client.send(request, stream=True)
        await publish_numbered(publisher, "echo", range(50))
        await response.aclose()  # drop the connection without reading the rest
        await client.aclose()
        await publish_numbered(publisher, "echo", range(50, 60))
    after = await wait_until_idle(gateway, baseline_tasks=10**6)
    assert after["streams"]["open"] == 0
    assert after["hub"]["channels"] == 0
    assert await redis_client.pubsub_channels("sse:*") == []
