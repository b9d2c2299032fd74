"""Assertions shared by the end-to-end tests: cursors, sequences, publishing helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Protocol

from contract.events import Echo, EchoPayload, ReverseEcho
from gateway.resume.cursor import parse_stream_id
from producers.publisher import Publisher


class EventLike(Protocol):
    id: str | None
    event: str
    data: str


def cursor_positions(cursor: str) -> dict[str, tuple[int, int]]:
    """``echo=5-0,reverse_echo=earliest`` -> ``{"echo": (5, 0)}`` (ids only)."""
    positions = {}
    for part in cursor.split(","):
        name, _, value = part.partition("=")
        if value not in ("earliest", "live"):
            positions[name] = parse_stream_id(value)
    return positions


def assert_cursors_never_move_backwards(events: Iterable[EventLike]) -> None:
    seen: dict[str, tuple[int, int]] = {}
    for event in events:
        assert event.id is not None, f"event without id: {event}"
        for channel, position in cursor_positions(event.id).items():
            assert position >= seen.get(channel, (-1, -1)), f"cursor moved back at {event.id}"
            seen[channel] = position


def messages(events: Iterable[EventLike], event_name: str) -> list[str]:
    return [json.loads(e.data)["message"] for e in events if e.event == event_name]


def channel_events(events: Iterable[EventLike]) -> list[EventLike]:
    """Only Echo/ReverseEcho events (no control events)."""
    return [e for e in events if e.event in ("echo", "reverse_echo")]


async def publish_numbered(
    publisher: Publisher, channel: str, numbers: Iterable[int], *, reverse: bool = False
) -> list[str]:
    """Publish ``msg-<n>`` for each n; return the entry ids."""
    ids = []
    for number in numbers:
        payload = EchoPayload(message=f"msg-{number}")
        event: Any = ReverseEcho(data=payload) if reverse else Echo(data=payload)
        ids.append(await publisher.publish(channel, event))
    return ids


@contextlib.asynccontextmanager
async def publishing_in_background(
    redis_url: str, channels: Sequence[str], *, count: int, interval: float
) -> AsyncIterator[asyncio.Task[None]]:
    """Publish msg-0..msg-<count-1> on every channel (``reverse_echo`` gets ReverseEcho),
    one round every ``interval`` seconds, in a task this block owns."""

    async def run() -> None:
        async with Publisher.from_url(redis_url) as publisher:
            for number in range(count):
                for channel in channels:
                    await publish_numbered(
                        publisher, channel, [number], reverse=channel == "reverse_echo"
                    )
                await asyncio.sleep(interval)

    task = asyncio.create_task(run())
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def numbered(count: int, start: int = 0) -> list[str]:
    return [f"msg-{n}" for n in range(start, start + count)]


def assert_exactly(received: Sequence[str], expected: Sequence[str]) -> None:
    """Whole-sequence comparison with a readable diff of what is missing or doubled."""
    if list(received) != list(expected):
        missing = sorted(set(expected) - set(received))
        doubled = sorted({m for m in received if list(received).count(m) > 1})
        raise AssertionError(
            f"sequence differs: {len(received)} received, {len(expected)} expected; "
            f"missing {missing[:10]}, doubled {doubled[:10]}"
        )
