"""SSE frames: the bytes a stream sends for entries, gaps and its own control events.

A frame's ``id:`` is the stream's cursor after that frame: its position in every
channel (``gateway.resume.cursor``). The part of an entry's frame after the id
is built once per entry and kept on it; a stream of one channel alone sends the
entry's whole frame, also built once, so every such stream shares its bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from contract.control import (
    RECONNECT_REASONS,
    CursorInvalid,
    CursorInvalidPayload,
    HistoryGap,
    HistoryGapPayload,
    Reconnect,
    ReconnectPayload,
)
from contract.events import BaseEvent
from gateway.broker import Entry
from gateway.fanout import Snapshot
from gateway.resume.cursor import EARLIEST, StreamPositions, single_channel_cursor
from gateway.resume.feed import Gap, Item

_LINE_BREAKS = (b"\r\n", b"\r")

PIECE_BYTES = 64 * 1024
"""Payload bytes rendered for one write. The stream's task renders the next piece only
once the last one was written, and a write waits while the socket's buffer is over its
high-water mark: a client that stops reading holds about one piece and that buffer, not
a history page (500 entries of 10 KB would be 5 MB, plus its framed copy)."""
_FRAME_OVERHEAD = 64


def data_lines(data: bytes) -> bytes:
    """The ``data:`` field(s) for a payload; a multi-line payload gets one line each."""
    if b"\n" not in data and b"\r" not in data:
        return b"data: " + data
    for brk in _LINE_BREAKS:
        data = data.replace(brk, b"\n")
    return b"data: " + data.replace(b"\n", b"\ndata: ")


def entry_tail(entry: Entry) -> bytes:
    """Everything of an entry's frame after the ``id:`` value."""
    tail = entry.sse_tail
    if tail is None:
        tail = entry.sse_tail = (
            b"\nevent: " + entry.event + b"\n" + data_lines(entry.data) + b"\n\n"
        )
    return tail


def solo_frame(entry: Entry) -> bytes:
    """The whole frame of an entry for a stream of its channel alone."""
    frame = entry.sse_solo
    if frame is None:
        cursor = single_channel_cursor(entry.channel, entry.id)
        frame = entry.sse_solo = b"id: " + cursor + entry_tail(entry)
    return frame


def control_frame(cursor: bytes, event: BaseEvent[Any]) -> bytes:
    """A frame for a gateway control event, carrying the current cursor."""
    name = event.event_name.encode()
    return (
        b"id: " + cursor + b"\nevent: " + name + b"\n" + data_lines(event.encode_data()) + b"\n\n"
    )


class _JoinedPage:
    """The history page a stream of one channel rendered last, its frames joined once.

    Streams resuming at the same position are handed the same page (the very tuple of its
    entries, ``ChannelFeed``): in a resume storm each would otherwise measure it and join
    its frames again. One page is kept, the last one rendered."""

    __slots__ = ("entries", "frames", "size")

    def __init__(self) -> None:
        self.entries: tuple[Entry, ...] = ()
        self.frames = b""
        self.size = 0

    def frames_of(self, items: Sequence[Item]) -> bytes | None:
        """The frames of ``items`` if they are a page of entries (a tuple), else None."""
        if items is self.entries:
            return self.frames
        if type(items) is not tuple or not all(isinstance(item, Entry) for item in items):
            return None
        entries: tuple[Entry, ...] = items
        self.frames = b"".join(entry.sse_solo or solo_frame(entry) for entry in entries)
        self.size = sum(len(entry.data) + _FRAME_OVERHEAD for entry in entries)
        self.entries = entries
        return self.frames


_joined = _JoinedPage()


def pieces(items: Sequence[Item], limit: int = PIECE_BYTES) -> Iterator[Sequence[Item]]:
    """``items`` in consecutive runs of about ``limit`` payload bytes (at least one item each),
    to be rendered and written one after the other."""
    if items is _joined.entries and _joined.size < limit:
        yield items  # measured when it was joined
        return
    size, start = 0, 0
    for end, item in enumerate(items, 1):
        if isinstance(item, Entry):
            size += len(item.data) + _FRAME_OVERHEAD
            if size >= limit:
                yield items if start == 0 and end == len(items) else items[start:end]
                size, start = 0, end
    if start < len(items):
        yield items if start == 0 else items[start:]


def render(positions: StreamPositions, index: int, items: Sequence[Item]) -> bytes:
    """The frames of items of channel ``index``, advancing the positions past each."""
    if len(positions.ids) == 1:
        return _render_solo(positions, items)
    parts = []
    for item in items:
        if isinstance(item, Entry):
            positions.advance(index, item.id, item.key)
            parts.append(b"id: " + positions.text() + entry_tail(item))
        else:
            parts.append(_gap_frame(positions, index, item))
    return b"".join(parts)


def _render_solo(positions: StreamPositions, items: Sequence[Item]) -> bytes:
    if len(items) == 1 and isinstance(items[0], Entry):
        entry = items[0]  # the common live case: the shared frame, not a copy
        positions.advance(0, entry.id, entry.key)
        return entry.sse_solo or solo_frame(entry)
    joined = _joined.frames_of(items)
    if joined is not None:
        final = items[-1]
        assert isinstance(final, Entry)
        positions.advance(0, final.id, final.key)
        return joined
    parts = []
    last: Entry | None = None
    for item in items:
        if isinstance(item, Entry):
            parts.append(item.sse_solo or solo_frame(item))
            last = item
            continue
        if last is not None:  # a gap frame carries the cursor: bring it up to date first
            positions.advance(0, last.id, last.key)
            last = None
        parts.append(_gap_frame(positions, 0, item))
    if last is not None:
        positions.advance(0, last.id, last.key)
    return b"".join(parts)


def _gap_frame(positions: StreamPositions, index: int, gap: Gap) -> bytes:
    positions.move(index, gap.resumed_after)
    payload = HistoryGapPayload(
        channel=gap.channel,
        reason="lost" if gap.reason == "lost" else "trimmed",
        requested=gap.requested.decode(),
        resumed_after=EARLIEST if gap.resumed_after is None else gap.resumed_after.decode(),
    )
    return control_frame(positions.text(), HistoryGap(data=payload))


def opening(
    positions: StreamPositions, retry_ms: int, notices: Iterable[BaseEvent[Any]] = ()
) -> bytes:
    """The first bytes: the retry hint and the starting cursor (an id-only frame sets
    EventSource's lastEventId without dispatching an event), then notices."""
    cursor = positions.text()
    head = b"retry: %d\nid: %s\n\n" % (retry_ms, cursor)
    return head + b"".join(control_frame(cursor, notice) for notice in notices)


def closing(positions: StreamPositions, reason: str, retry_ms: int) -> bytes:
    """The last bytes of a stream the gateway ends: why, and how soon to come back."""
    known = reason if reason in RECONNECT_REASONS else "slow_consumer"
    payload = ReconnectPayload(reason=known, retry_ms=retry_ms)
    return b"retry: %d\n\n" % retry_ms + control_frame(positions.text(), Reconnect(data=payload))


def cursor_invalid_notice(reason: str, value: str) -> CursorInvalid:
    return CursorInvalid(
        data=CursorInvalidPayload(reason=reason, value=value, starting_from="live")
    )


class GroupFrames:
    """A fan-out group's positions and frames (``gateway.fanout.Renderer``)."""

    __slots__ = ("_positions",)

    def __init__(self, positions: StreamPositions) -> None:
        self._positions = positions

    def position(self, index: int) -> bytes | None:
        return self._positions.ids[index]

    def snapshot(self) -> Snapshot:
        return self._positions.snapshot()

    def render(self, index: int, entries: Sequence[Entry]) -> bytes:
        return render(self._positions, index, entries)
