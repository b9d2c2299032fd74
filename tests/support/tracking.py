"""What a client received, per channel, checked against the channel's history in Redis.

Each frame's ``id:`` is the cursor after it: the channel of an event is the one whose
position it moved. Comparing entry ids (and payloads) with ``XRANGE`` of the channel's
stream checks the whole sequence: nothing lost, nothing doubled, nothing out of order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from contract.wire import FIELD_DATA, Keyspace
from tests.support.raw_sse import Event

CONTROL_EVENTS = frozenset({"history_gap", "cursor_invalid", "reconnect"})

Delivered = tuple[str, str]
"""(entry id, payload) of one channel event."""


def cursor_positions(cursor: str) -> dict[str, str]:
    """``echo=1-0,numbered=earliest`` -> ``{"echo": "1-0", "numbered": "earliest"}``."""
    return dict(part.split("=", 1) for part in cursor.split(","))


@dataclass(frozen=True)
class Control:
    """A control event, and how many entries of each channel had arrived before it."""

    event: Event
    seen: dict[str, int]


@dataclass
class Received:
    """Everything one client got over all its connections, per channel."""

    channels: Sequence[str]
    entries: dict[str, list[Delivered]] = field(default_factory=dict)
    controls: list[Control] = field(default_factory=list)
    _positions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.entries = {channel: [] for channel in self.channels}

    def start(self, opening_cursor: str) -> None:
        """A (re)connection began at this cursor."""
        self._positions = cursor_positions(opening_cursor)

    def add(self, event: Event) -> None:
        assert event.id is not None, f"event without id: {event}"
        positions = cursor_positions(event.id)
        if event.event in CONTROL_EVENTS:
            seen = {channel: len(entries) for channel, entries in self.entries.items()}
            self.controls.append(Control(event, seen))
        else:
            moved = [c for c, pos in positions.items() if self._positions.get(c) != pos]
            assert len(moved) == 1, f"{event.id} after {self._positions}: which channel?"
            self.entries[moved[0]].append((positions[moved[0]], event.data))
        self._positions = positions


async def channel_history(redis: Redis, channel: str, prefix: str = "sse") -> list[Delivered]:
    """The channel's whole retained history, as a client should receive it."""
    raw = await redis.xrange(Keyspace(prefix).history_key(channel))
    assert raw is not None  # a missing stream reads as an empty list
    history = []
    for entry_id, fields in raw:
        assert isinstance(entry_id, bytes)  # the client does not decode responses
        assert fields is not None
        data = fields[FIELD_DATA]
        assert isinstance(data, bytes)
        history.append((entry_id.decode(), data.decode()))
    return history


@dataclass(frozen=True)
class Comparison:
    expected: int
    received: int
    lost: int
    duplicated: int
    in_order: bool

    @property
    def exact(self) -> bool:
        return self.in_order and not self.lost and not self.duplicated


def compare(received: Sequence[Delivered], expected: Sequence[Delivered]) -> Comparison:
    got_ids = [entry_id for entry_id, _ in received]
    return Comparison(
        expected=len(expected),
        received=len(received),
        lost=len({entry_id for entry_id, _ in expected} - set(got_ids)),
        duplicated=len(got_ids) - len(set(got_ids)),
        in_order=list(received) == list(expected),
    )
