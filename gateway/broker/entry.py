"""Entries: one channel event as the gateway holds it, decoded once and shared.

An ``Entry`` comes from Redis either live (a pub/sub message) or from a
channel's history (a stream entry); both carry the same fields. Every client
that receives an entry gets the same object, so the SSE bytes built for it
(``gateway.resume.frames``) are built once and kept on it.

Stream ids order entries within a channel. Redis writes them as ``ms-seq``;
``StreamKey`` is the same id as integers, so that ids compare correctly.
"""

from __future__ import annotations

from typing import Final

from contract.wire import decode_fields, decode_live

StreamKey = tuple[int, int]
"""A Redis stream id as comparable integers: ``b"17-3"`` -> ``(17, 3)``."""

BEFORE_ALL: Final[StreamKey] = (-1, -1)
"""The key of a position before every entry of a channel."""


def stream_key(entry_id: bytes) -> StreamKey:
    """The key of an id in Redis's form (``ms-seq``). Raises ValueError for anything else."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def format_stream_id(key: StreamKey) -> bytes:
    return b"%d-%d" % key


class Entry:
    """A channel event: its id, its predecessor's id, event name and payload bytes."""

    # __weakref__: history reads share entries still held by other streams (HistoryReader).
    __slots__ = (
        "__weakref__",
        "channel",
        "data",
        "event",
        "id",
        "key",
        "prev",
        "sse_solo",
        "sse_tail",
    )

    def __init__(self, channel: str, entry_id: bytes, prev: bytes, event: bytes, data: bytes):
        self.channel = channel
        self.id = entry_id
        self.key: StreamKey = stream_key(entry_id)
        self.prev = prev
        self.event = event
        self.data = data
        self.sse_tail: bytes | None = None
        """The SSE frame after its ``id:`` value, built once by ``gateway.resume.frames``."""
        self.sse_solo: bytes | None = None
        """The whole frame for a stream of this channel alone, built once the same way."""

    @classmethod
    def from_live(cls, channel: str, payload: bytes) -> Entry:
        """The entry a live message carries. Raises ValueError for a malformed message."""
        message = decode_live(payload)
        return cls(channel, message.id, message.prev, message.event, message.data)

    @classmethod
    def from_history(
        cls, channel: str, entry_id: bytes, fields: dict[bytes, bytes] | list[bytes]
    ) -> Entry:
        event, data, prev = decode_fields(fields)
        return cls(channel, entry_id, prev, event, data)

    def __repr__(self) -> str:
        return f"Entry({self.channel}={self.id.decode()}, prev={self.prev.decode()})"
