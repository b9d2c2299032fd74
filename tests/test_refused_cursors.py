"""Positions that parse but that Redis may refuse: answered in the stream, never a dropped
connection.

``XRANGE (18446744073709551615-18446744073709551615 +`` is an error in Redis (no id can
follow the largest one). A client chooses its cursor, so whatever pair of 64-bit
integers it names as a position, its stream opens, says where it resumes (history or a
``history_gap``), and goes on live on every one of its channels.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contract.events import Echo, EchoPayload
from producers.publisher import Publisher
from tests.support.processes import GatewayProcess
from tests.support.raw_sse import Event, RawStream
from tests.support.redis_server import RedisServer
from tests.support.standalone import standalone_gateway

MAX_ID_PART = 2**64 - 1
CHANNELS = ["other", "target"]
id_parts = st.integers(min_value=0, max_value=MAX_ID_PART)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GatewayProcess, RedisServer]]:
    with standalone_gateway() as (gateway, redis):
        asyncio.run(publish(redis.url, "target", "history", 3))
        yield gateway, redis


async def publish(redis_url: str, channel: str, message: str, count: int = 1) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        for n in range(count):
            data = Echo(data=EchoPayload(message=f"{message}-{n}")).encode_data()
            await publisher.publish_raw(channel, "echo", data)


def carrying(events: list[Event], message: str) -> list[Event]:
    return [e for e in events if e.event == "echo" and json.loads(e.data)["message"] == message]


async def read_until(
    stream: RawStream, message: str, count: int, timeout: float = 10
) -> list[Event]:
    """Events until ``count`` of them carry ``message``; fails if the stream ends first."""
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while len(carrying(events, message)) < count:
            batch = await stream.read()
            assert batch is not None, f"the stream ended after {events}"
            events += batch
    return events


async def resume_from(
    gateway: GatewayProcess, redis_url: str, ms: int, seq: int
) -> tuple[list[Event], str]:
    cursor = f"target={ms}-{seq},other=live"
    stream = await RawStream.open(gateway.port, CHANNELS, last_event_id=cursor)
    try:
        while stream.last_id is None:
            assert await stream.read() is not None, "the stream ended before it opened"
        assert stream.parser.status == 200
        marker = f"live-{ms}-{seq}-{uuid.uuid4().hex}"  # hypothesis may run an example twice
        await publish(redis_url, "target", marker)
        await publish(redis_url, "other", marker)
        return await read_until(stream, f"{marker}-0", 2), marker
    finally:
        await stream.aclose()


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(ms=id_parts, seq=id_parts)
@example(ms=MAX_ID_PART, seq=MAX_ID_PART)  # the id Redis cannot go past
@example(ms=MAX_ID_PART, seq=0)
@example(ms=0, seq=0)
@example(ms=1, seq=MAX_ID_PART)
def test_any_position_of_two_64_bit_integers_yields_an_open_live_stream(
    served: tuple[GatewayProcess, RedisServer], ms: int, seq: int
) -> None:
    gateway, redis = served
    events, marker = asyncio.run(resume_from(gateway, redis.url, ms, seq))
    # Both channels go on live: the position of one never costs the other.
    live = carrying(events, f"{marker}-0")
    assert len(live) == 2, events
    assert not [e for e in events if e.event == "reconnect"], events
    assert "Traceback" not in gateway.log()
