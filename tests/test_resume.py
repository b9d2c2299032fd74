"""Resume with Last-Event-ID: exactly the missed events, then live; on any replica."""

from __future__ import annotations

import asyncio

import pytest

from producers.publisher import Publisher
from tests.support.assertions import (
    assert_cursors_never_move_backwards,
    assert_exactly,
    channel_events,
    messages,
    numbered,
    publish_numbered,
)
from tests.support.paths import ALL_PATHS, StreamPath
from tests.support.sse import sse_connect


@pytest.fixture(params=ALL_PATHS, ids=lambda path: path.name)
def stream_path(request: pytest.FixtureRequest) -> StreamPath:
    """Every test here runs on the fast path and on both stock paths."""
    path: StreamPath = request.param
    return path


async def test_resume_one_channel_gets_the_missed_events_then_live(redis_url: str, gateway) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        async with sse_connect(gateway.base_url, channels=["echo"]) as stream:
            await publish_numbered(publisher, "echo", range(5))
            first = await stream.take(3, timeout=10)
            last_id = first[-1].id
        await publish_numbered(publisher, "echo", range(5, 10))
        async with sse_connect(
            gateway.base_url, channels=["echo"], last_event_id=last_id
        ) as stream:
            replayed = await stream.take(7, timeout=10)
            await publish_numbered(publisher, "echo", range(10, 12))
            live = await stream.take(2, timeout=10)
    assert_exactly(messages(first + replayed + live, "echo"), numbered(12))
    assert_cursors_never_move_backwards(first + replayed + live)


async def test_resume_several_channels_gets_exactly_what_each_missed(
    redis_url: str, gateway
) -> None:
    channels = ["echo", "reverse_echo"]
    async with Publisher.from_url(redis_url) as publisher:
        async with sse_connect(gateway.base_url, channels=channels) as stream:
            await publish_numbered(publisher, "echo", range(4))
            await publish_numbered(publisher, "reverse_echo", range(4), reverse=True)
            first = channel_events(await stream.take(5, timeout=10))
            last_id = stream.last_id
        await publish_numbered(publisher, "reverse_echo", range(4, 8), reverse=True)
        await publish_numbered(publisher, "echo", range(4, 8))
        async with sse_connect(
            gateway.base_url, channels=channels, last_event_id=last_id
        ) as stream:
            rest = channel_events(await stream.take(16 - len(first), timeout=10))
    everything = first + rest
    assert_exactly(messages(everything, "echo"), numbered(8))
    assert_exactly(messages(everything, "reverse_echo"), numbered(8))
    assert_cursors_never_move_backwards(everything)


async def test_resume_while_publishing_flat_out_loses_and_doubles_nothing(
    redis_url: str, gateway
) -> None:
    total = 1500
    channels = ["echo", "reverse_echo"]

    async def flood(publisher: Publisher) -> None:
        for n in range(total):
            await publish_numbered(publisher, "echo", [n])
            await publish_numbered(publisher, "reverse_echo", [n], reverse=True)

    received = []
    async with Publisher.from_url(redis_url) as publisher:
        flooding = asyncio.create_task(flood(publisher))
        try:
            last_id = "earliest"  # the flood may start before the first stream opens
            # Several disconnect/reconnect rounds in the middle of the flood.
            for _ in range(4):
                async with sse_connect(
                    gateway.base_url, channels=channels, last_event_id=last_id
                ) as stream:
                    received += channel_events(await stream.take(250, timeout=20))
                    last_id = stream.last_id
            async with sse_connect(
                gateway.base_url, channels=channels, last_event_id=last_id
            ) as stream:
                remaining = 2 * total - len(received)
                received += channel_events(await stream.take(remaining, timeout=60))
        finally:
            await flooding
    assert_exactly(messages(received, "echo"), numbered(total))
    assert_exactly(messages(received, "reverse_echo"), numbered(total))
    assert_cursors_never_move_backwards(received)


async def test_resume_on_another_gateway_process(redis_url: str, gateway_factory) -> None:
    first_gateway, second_gateway = gateway_factory(), gateway_factory()
    async with Publisher.from_url(redis_url) as publisher:
        async with sse_connect(first_gateway.base_url, channels=["echo", "reverse_echo"]) as s:
            await publish_numbered(publisher, "echo", range(3))
            first = await s.take(2, timeout=10)
            last_id = s.last_id
        await publish_numbered(publisher, "echo", range(3, 6))
        await publish_numbered(publisher, "reverse_echo", range(2), reverse=True)
        async with sse_connect(
            second_gateway.base_url, channels=["echo", "reverse_echo"], last_event_id=last_id
        ) as s:
            rest = await s.take(6, timeout=10)
    assert_exactly(messages(first + rest, "echo"), numbered(6))
    assert_exactly(messages(first + rest, "reverse_echo"), numbered(2))


async def test_a_live_start_is_resumable_before_any_event_arrived(redis_url: str, gateway) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", range(2))  # before: not wanted
        async with sse_connect(gateway.base_url, channels=["echo"]) as stream:
            await stream.wait_for_opening(timeout=10)
            opening_id = stream.last_id
        assert opening_id is not None
        assert opening_id.startswith("echo=")
        await publish_numbered(publisher, "echo", range(2, 5))
        async with sse_connect(
            gateway.base_url, channels=["echo"], last_event_id=opening_id
        ) as stream:
            events = await stream.take(3, timeout=10)
    assert messages(events, "echo") == numbered(3, start=2)


async def test_earliest_replays_retained_history_and_live_skips_it(redis_url: str, gateway) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", range(3))
        async with (
            sse_connect(
                gateway.base_url, channels=["echo"], query_last_event_id="earliest"
            ) as early,
            sse_connect(gateway.base_url, channels=["echo"]) as live,
        ):
            await live.wait_for_opening(timeout=10)
            await publish_numbered(publisher, "echo", [3])
            assert messages(await early.take(4, timeout=10), "echo") == numbered(4)
            assert messages(await live.take(1, timeout=10), "echo") == ["msg-3"]


async def test_the_header_wins_over_the_query_parameter(redis_url: str, gateway) -> None:
    """EventSource reconnects to the same URL (with the old ?last_event_id) plus the header."""
    async with Publisher.from_url(redis_url) as publisher:
        ids = await publish_numbered(publisher, "echo", range(4))
    async with sse_connect(
        gateway.base_url,
        channels=["echo"],
        query_last_event_id=f"echo={ids[0]}",
        last_event_id=f"echo={ids[2]}",
    ) as stream:
        assert messages(await stream.take(1, timeout=10), "echo") == ["msg-3"]
