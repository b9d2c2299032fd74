"""Entries: one channel event as the gateway holds it, with its SSE frame built once.

An ``Entry`` is shared by every client that receives it (live entries by all
local subscribers of the channel, history pages by all clients reading the
same page), so the bytes of its frame are encoded once and reused.
"""

from __future__ import annotations

from contract.wire import LiveMessage, decode_fields
from gateway.resume.cursor import StreamKey, stream_key

_LINE_BREAKS = (b"\r\n", b"\r")


def data_lines(data: bytes) -> bytes:
    """The ``data:`` field(s) for a payload; a multi-line payload gets one line each."""
    if b"\n" not in data and b"\r" not in data:
        return b"data: " + data
    for brk in _LINE_BREAKS:
        data = data.replace(brk, b"\n")
    return b"data: " + data.replace(b"\n", b"\ndata: ")


class Entry:
    """A channel event: its id, its predecessor's id, event name and payload bytes."""

    __slots__ = ("_frame_tail", "_solo_frame", "channel", "data", "event", "id", "key", "prev")

    def __init__(self, channel: str, entry_id: bytes, prev: bytes, event: bytes, data: bytes):
        self.channel = channel
        self.id = entry_id
        self.key: StreamKey = stream_key(entry_id)
        self.prev = prev
        self.event = event
        self.data = data
        self._frame_tail: bytes | None = None
        self._solo_frame: bytes | None = None

    @classmethod
    def from_live(cls, channel: str, message: LiveMessage) -> Entry:
        return cls(channel, message.id, message.prev, message.event, message.data)

    @classmethod
    def from_history(
        cls, channel: str, entry_id: bytes, fields: dict[bytes, bytes] | list[bytes]
    ) -> Entry:
        event, data, prev = decode_fields(fields)
        return cls(channel, entry_id, prev, event, data)

    def frame_tail(self) -> bytes:
        """Everything of the frame after the ``id:`` value."""
        tail = self._frame_tail
        if tail is None:
            tail = self._frame_tail = (
                b"\nevent: " + self.event + b"\n" + data_lines(self.data) + b"\n\n"
            )
        return tail

    def solo_frame(self) -> bytes:
        """The whole frame for a client subscribed to this channel alone."""
        frame = self._solo_frame
        if frame is None:
            frame = self._solo_frame = (
                b"id: " + self.channel.encode() + b"=" + self.id + self.frame_tail()
            )
        return frame

    def frame(self, cursor: bytes) -> bytes:
        """The frame for a client whose cursor after this entry is ``cursor``."""
        return b"id: " + cursor + self.frame_tail()

    def __repr__(self) -> str:
        return f"Entry({self.channel}={self.id.decode()}, prev={self.prev.decode()})"


class LiveBatch:
    """The live entries of one channel gathered by one hub flush, shared by every local client.

    Every client on this channel alone whose position is the batch's start gets the
    same bytes: they are joined once per flush, not once per client."""

    __slots__ = ("_solo_chunk", "entries", "first_prev", "last", "rendered", "size")

    def __init__(self, entries: list[Entry], size: int) -> None:
        self.entries = entries
        self.size = size
        """Payload bytes, for the sinks' limits."""
        self.first_prev = entries[0].prev
        self.last = entries[-1]
        self._solo_chunk: bytes | None = None
        self.rendered: dict[bytes, bytes] = {}
        """Frames for clients on several channels, by their cursor before this batch."""

    def solo_chunk(self) -> bytes:
        """The frames of every entry, for a client subscribed to this channel alone."""
        chunk = self._solo_chunk
        if chunk is None:
            entries = self.entries
            chunk = self._solo_chunk = (
                entries[0].solo_frame()
                if len(entries) == 1
                else b"".join(entry.solo_frame() for entry in entries)
            )
        return chunk
