"""When history no longer reaches back: a typed control event, exact, for the right channel."""

from __future__ import annotations

import json

import pytest

from producers.publisher import Publisher, Retention
from tests.support.assertions import channel_events, messages, numbered, publish_numbered
from tests.support.paths import ALL_PATHS, StreamPath
from tests.support.sse import sse_connect


@pytest.fixture(params=ALL_PATHS, ids=lambda path: path.name)
def stream_path(request: pytest.FixtureRequest) -> StreamPath:
    """Every test here runs on the fast path and on both stock paths."""
    path: StreamPath = request.param
    return path


SMALL = Retention(maxlen=5, exact_trim=True)


async def test_a_stale_cursor_gets_a_gap_event_then_what_is_retained(
    redis_url: str, gateway
) -> None:
    async with Publisher.from_url(redis_url, retention=SMALL) as publisher:
        ids = await publish_numbered(publisher, "echo", range(3))
        await publish_numbered(publisher, "echo", range(3, 12))  # trims msg-0..msg-6
        async with sse_connect(
            gateway.base_url, channels=["echo"], last_event_id=f"echo={ids[1]}"
        ) as stream:
            events = await stream.take(6, timeout=10)
    gap, rest = events[0], events[1:]
    assert gap.event == "history_gap"
    payload = json.loads(gap.data)
    assert payload["channel"] == "echo"
    assert payload["reason"] == "trimmed"
    assert payload["requested"] == ids[1]
    assert messages(rest, "echo") == numbered(5, start=7)
    assert gap.id is not None
    assert gap.id.startswith("echo=")


@pytest.mark.parametrize(("cursor_index", "expected_from"), [(5, 6), (4, 5)])
async def test_a_cursor_within_retention_gets_no_gap_event(
    redis_url: str, gateway, cursor_index: int, expected_from: int
) -> None:
    # After 10 publishes msg-5 is the oldest retained; a cursor on it, or even on the
    # trimmed msg-4 (whose successor is still there), has missed nothing.
    async with Publisher.from_url(redis_url, retention=SMALL) as publisher:
        ids = await publish_numbered(publisher, "echo", range(10))
        async with sse_connect(
            gateway.base_url, channels=["echo"], last_event_id=f"echo={ids[cursor_index]}"
        ) as stream:
            events = await stream.take(10 - expected_from, timeout=10)
            await publish_numbered(publisher, "echo", [100])
            events += await stream.take(1, timeout=10)
    assert [e.event for e in events] == ["echo"] * len(events)
    assert messages(events, "echo") == [*numbered(10 - expected_from, expected_from), "msg-100"]


async def test_the_gap_event_names_only_the_channel_that_lost_events(
    redis_url: str, gateway
) -> None:
    async with Publisher.from_url(redis_url, retention=SMALL) as publisher:
        echo_ids = await publish_numbered(publisher, "echo", range(2))
        rev_ids = await publish_numbered(publisher, "reverse_echo", range(2), reverse=True)
        await publish_numbered(publisher, "echo", range(2, 10))
        await publish_numbered(publisher, "reverse_echo", range(2, 4), reverse=True)
        cursor = f"echo={echo_ids[0]},reverse_echo={rev_ids[1]}"
        async with sse_connect(
            gateway.base_url, channels=["echo", "reverse_echo"], last_event_id=cursor
        ) as stream:
            events = await stream.take(1 + 5 + 2, timeout=10)
    gaps = [json.loads(e.data) for e in events if e.event == "history_gap"]
    assert [(g["channel"], g["reason"]) for g in gaps] == [("echo", "trimmed")]
    assert messages(events, "echo") == numbered(5, start=5)
    assert messages(events, "reverse_echo") == numbered(2, start=2)


async def test_redis_restarted_empty_gives_a_lost_gap_event(redis_server, gateway_factory) -> None:
    gateway = gateway_factory()
    async with (
        Publisher.from_url(redis_server.url) as publisher,
        sse_connect(gateway.base_url, channels=["echo"]) as stream,
    ):
        await publish_numbered(publisher, "echo", range(3))
        seen = await stream.take(3, timeout=10)
        last_id = stream.last_id
    redis_server.restart(empty=True)
    async with Publisher.from_url(redis_server.url) as publisher:
        await publish_numbered(publisher, "echo", range(100, 102))
        async with sse_connect(
            gateway.base_url, channels=["echo"], last_event_id=last_id, timeout=30
        ) as stream:
            events = await stream.take(3, timeout=30)
    assert messages(seen, "echo") == numbered(3)
    gap = json.loads(events[0].data)
    assert events[0].event == "history_gap"
    assert (gap["channel"], gap["reason"]) == ("echo", "lost")
    assert messages(channel_events(events), "echo") == numbered(2, start=100)
