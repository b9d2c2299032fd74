"""Producers as real processes, a real gateway, a real SSE client: the happy path."""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
from redis.asyncio import Redis

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
from tests.support.raw_sse import RawStream
from tests.support.sse import sse_connect

FRAME = re.compile(
    rb"id: echo=\d+-\d+,reverse_echo=(?:\d+-\d+)\n"
    rb"event: (echo|reverse_echo)\n"
    rb'data: \{"message":"(hello|olleh)","created_at":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z"\}\n\n'
)


async def test_producer_processes_reach_a_client_with_the_documented_framing(
    redis_url: str, gateway, producer_factory
) -> None:
    url = f"{gateway.base_url}/sse?channel=echo&channel=reverse_echo"
    received = b""
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(20)) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-accel-buffering"] == "no"
        echo = producer_factory("echo", message="hello", interval=0.05, count=3)
        reverse = producer_factory("reverse-echo", message="hello", interval=0.05, count=3)
        async for chunk in response.aiter_bytes():
            received += chunk
            if len(FRAME.findall(received)) >= 6:
                break
        assert echo.wait(timeout=20) == 0
        assert reverse.wait(timeout=20) == 0
    opening, _, rest = received.partition(b"\n\n")
    assert re.fullmatch(rb"retry: 2000\nid: echo=0-0,reverse_echo=0-0", opening), opening
    names = [match.group(1) for match in FRAME.finditer(rest)]
    assert sorted(names) == [b"echo"] * 3 + [b"reverse_echo"] * 3
    assert [m.group(2) for m in FRAME.finditer(rest) if m.group(1) == b"reverse_echo"] == [
        b"olleh"
    ] * 3


async def test_a_client_gets_both_channels_in_publish_order_with_forward_cursors(
    redis_url: str, gateway
) -> None:
    async with sse_connect(gateway.base_url, channels=["echo", "reverse_echo"]) as stream:
        async with Publisher.from_url(redis_url) as publisher:
            for n in range(40):
                await publish_numbered(publisher, "echo", [n])
                if n % 2 == 0:
                    await publish_numbered(publisher, "reverse_echo", [n // 2], reverse=True)
        events = await stream.take(60, timeout=20)
    events = channel_events(events)
    assert_exactly(messages(events, "echo"), numbered(40))
    assert_exactly(messages(events, "reverse_echo"), numbered(20))
    assert_cursors_never_move_backwards(events)
    for event in events:
        payload = json.loads(event.data)
        assert set(payload) == {"message", "created_at"}


async def test_one_pubsub_connection_serves_many_clients(
    redis_url: str, redis_client: Redis, gateway
) -> None:
    before = await redis_client.client_list(_type="pubsub")
    streams = [sse_connect(gateway.base_url, channels=["echo", f"room-{i}"]) for i in range(20)]
    opened = [await s.__aenter__() for s in streams]
    try:
        stats = httpx.get(f"{gateway.base_url}/stats").json()
        assert stats["streams"]["open"] == 20
        assert stats["hub"]["channels"] == 21
        after = await redis_client.client_list(_type="pubsub")
        assert len(after) - len(before) == 1, "client count must not multiply pub/sub connections"
        async with Publisher.from_url(redis_url) as publisher:
            await publish_numbered(publisher, "echo", range(3))
        for stream in opened:
            assert messages(await stream.take(3, timeout=10), "echo") == numbered(3)
    finally:
        for s in streams:
            await s.__aexit__(None, None, None)


async def wait_for_open_streams(gateway: GatewayProcess, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(gateway.open_streams) != count:
        assert time.monotonic() < deadline, f"open streams never reached {count}"
        await asyncio.sleep(0.05)


async def test_a_request_pipelined_behind_a_stream_is_dropped_and_the_stream_goes_on(
    redis_url: str, gateway: GatewayProcess
) -> None:
    # The stream's response never ends, so nothing sent after its request can be
    # answered on this connection: the gateway reads no further request there.
    stream = await RawStream.open(gateway.port, ["echo"])
    try:
        await wait_for_open_streams(gateway, 1)
        stream.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        async with Publisher.from_url(redis_url) as publisher:
            await publish_numbered(publisher, "echo", range(3))
        received = []
        async with asyncio.timeout(10):
            while len(received) < 3:
                events = await stream.read()  # a response to the pipelined request would
                assert events is not None, "the stream ended"  # break the chunked body
                received += [e for e in events if e.event == "echo"]
        assert [json.loads(e.data)["message"] for e in received] == numbered(3)
    finally:
        await stream.aclose()
    await wait_for_open_streams(gateway, 0)
