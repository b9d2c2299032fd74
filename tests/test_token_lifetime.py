"""A token is good until its ``exp``: the stream ends then, and resumes exactly with a new one.

The stream ends no later than a second after ``exp`` with a ``reconnect`` event whose
reason is ``token_expired`` and a retry hint; a client that comes back with a fresh
token and its last id misses nothing and gets nothing twice. ``SSE_AUTH_MAX_STREAM_SECONDS``
ends streams sooner for long-lived tokens. ``SSE_MAX_STREAMS_PER_SUBJECT`` bounds the
streams of one ``sub`` (429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from producers.publisher import Publisher
from tests.support.assertions import (
    assert_exactly,
    channel_events,
    messages,
    numbered,
    publish_numbered,
)
from tests.support.processes import GatewayProcess
from tests.support.sse import Frame, sse_connect, sse_url

SECRET = "test-secret-of-at-least-thirty-two-bytes"
AUTH_ENV = {"SSE_AUTH_HS256_SECRET": SECRET}

GatewayFactory = Callable[..., GatewayProcess]


def token(exp: float, subject: str = "tester", channels: tuple[str, ...] = ("echo",)) -> str:
    body: dict[str, Any] = {"sub": subject, "exp": int(exp), "channels": list(channels)}
    return jwt.encode(body, SECRET, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def publish_steadily(redis_url: str, count: int, interval: float) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        for n in range(count):
            await publish_numbered(publisher, "echo", [n])
            await asyncio.sleep(interval)


async def read_until_closed(stream: Any, timeout: float) -> tuple[list[Frame], float]:
    """Every frame until the gateway ends the stream, and when it ended (epoch seconds)."""
    frames = await stream.drain(timeout)
    return frames, time.time()


async def test_a_stream_ends_at_its_tokens_exp_and_resumes_exactly_with_a_fresh_token(
    redis_url: str, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env=AUTH_ENV)
    total = 80
    exp = int(time.time()) + 3
    async with sse_connect(gateway.base_url, ["echo"], headers=bearer(token(exp))) as first:
        publishing = asyncio.create_task(publish_steadily(redis_url, total, 0.05))
        frames, ended_at = await read_until_closed(first, timeout=15)
    # Ended at exp, not before (exp is whole seconds), not more than a second after.
    assert exp - 0.05 <= ended_at <= exp + 1, f"ended {ended_at - exp:+.2f}s from exp"
    closing = frames[-1]
    assert closing.event == "reconnect", frames[-3:]
    assert json.loads(closing.data) == {"reason": "token_expired", "retry_ms": 2000}
    assert closing.retry == 2000 or any(f.retry == 2000 for f in frames[-2:])
    got = messages(channel_events(frames), "echo")
    assert got, "nothing arrived before exp"
    assert first.last_id is not None

    fresh = token(time.time() + 300)
    async with sse_connect(
        gateway.base_url, ["echo"], headers=bearer(fresh), last_event_id=first.last_id
    ) as second:
        await publishing
        rest = messages(await second.take(total - len(got), timeout=20), "echo")
    assert_exactly(got + rest, numbered(total))


async def test_max_stream_seconds_ends_streams_of_long_lived_tokens(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(env={**AUTH_ENV, "SSE_AUTH_MAX_STREAM_SECONDS": "1.5"})
    opened = time.monotonic()
    headers = bearer(token(time.time() + 3600))
    async with sse_connect(gateway.base_url, ["echo"], headers=headers) as stream:
        frames = await stream.drain(timeout=10)
    lasted = time.monotonic() - opened
    assert 1.5 <= lasted <= 2.5 + 1, f"the stream lasted {lasted:.2f}s"
    assert frames[-1].event == "reconnect"
    assert json.loads(frames[-1].data)["reason"] == "token_expired"


def get_sse(gateway: GatewayProcess, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(sse_url(gateway.base_url, ["echo"]), headers=headers, timeout=10)


async def test_streams_per_subject_beyond_the_limit_get_a_429_with_retry_after(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(env={**AUTH_ENV, "SSE_MAX_STREAMS_PER_SUBJECT": "2"})
    alice = bearer(token(time.time() + 300, subject="alice"))
    bob = bearer(token(time.time() + 300, subject="bob"))
    async with contextlib.AsyncExitStack() as held:
        for _ in range(2):
            await held.enter_async_context(sse_connect(gateway.base_url, headers=alice))
        refused = await asyncio.to_thread(get_sse, gateway, alice)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        error = refused.json()["error"]
        assert error["code"] == "too_many_streams_for_subject"
        assert "maximum of 2 streams" in error["message"]
        assert error["hint"]
        # Another subject is not held back by alice's streams.
        await held.enter_async_context(sse_connect(gateway.base_url, headers=bob))
        assert (await asyncio.to_thread(gateway.open_streams)) == 3
    # Once alice's streams are gone, her slots are free again.
    deadline = time.monotonic() + 10
    while (await asyncio.to_thread(gateway.open_streams)) != 0:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    async with (
        sse_connect(gateway.base_url, headers=alice),
        sse_connect(gateway.base_url, headers=alice),
    ):
        pass
