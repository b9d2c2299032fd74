"""SSE frames for one subscription: the cursor it carries and the bytes it sends.

A frame's ``id:`` is the cursor after that frame: the position of every
channel of the subscription. A client on one channel shares each entry's
frame bytes with every other such client; a client on several channels gets
the entry's shared tail behind its own cursor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from contract.control import (
    CursorInvalid,
    CursorInvalidPayload,
    HistoryGap,
    HistoryGapPayload,
    Reconnect,
    ReconnectPayload,
)
from contract.events import BaseEvent
from gateway.broker.entry import Entry, data_lines
from gateway.resume.feed import Gap, Item


def control_frame(cursor: bytes, event: BaseEvent[Any]) -> bytes:
    """A frame for a gateway control event, carrying the current cursor."""
    return (
        b"id: "
        + cursor
        + b"\nevent: "
        + event.event_name.encode()
        + b"\n"
        + data_lines(event.encode_data())
        + b"\n\n"
    )


class FrameWriter:
    """Tracks a subscription's cursor and renders its items as SSE bytes."""

    __slots__ = ("_index", "_names", "_parts", "_solo")

    def __init__(self, channels: Sequence[str], positions: Sequence[bytes]) -> None:
        self._index = {name: i for i, name in enumerate(channels)}
        self._names = [name.encode() + b"=" for name in channels]
        self._parts = [name + pos for name, pos in zip(self._names, positions, strict=True)]
        """``channel=position`` per channel: the cursor is their join, rendered per frame."""
        self._solo = len(channels) == 1

    def cursor(self) -> bytes:
        return b",".join(self._parts)

    def _move(self, index: int, position: bytes) -> None:
        self._parts[index] = self._names[index] + position

    def opening(self, retry_ms: int, notices: Iterable[BaseEvent[Any]] = ()) -> bytes:
        """The first bytes: the retry hint and the starting cursor (an id-only frame
        sets EventSource's lastEventId without dispatching an event), then notices."""
        cursor = self.cursor()
        head = b"retry: %d\nid: %s\n\n" % (retry_ms, cursor)
        return head + b"".join(control_frame(cursor, notice) for notice in notices)

    def render(self, items: Sequence[Item]) -> bytes:
        """The frames for items of one channel, advancing the cursor past each."""
        if self._solo:
            if len(items) == 1 and isinstance(items[0], Entry):
                entry = items[0]  # the common live case: the shared frame, not a copy
                self._move(0, entry.id)
                return entry.solo_frame()
            out = b"".join(
                item.solo_frame() if isinstance(item, Entry) else self._gap_frame(item)
                for item in items
            )
            # Later control frames (reconnect, gap) carry the cursor: keep it current,
            # or a client told to reconnect would resume from its opening position.
            last = items[-1] if items else None
            if isinstance(last, Entry):
                self._move(0, last.id)
            return out
        parts = []
        for item in items:
            if isinstance(item, Entry):
                self._move(self._index[item.channel], item.id)
                parts.append(item.frame(self.cursor()))
            else:
                parts.append(self._gap_frame(item))
        return b"".join(parts)

    def advance_solo(self, entry_id: bytes) -> None:
        """A one-channel client was sent frames up to ``entry_id`` without ``render``."""
        self._move(0, entry_id)

    def move_to(self, channel: str, entry_id: bytes) -> None:
        """Frames up to ``entry_id`` of ``channel`` were sent without ``render`` (a lockstep)."""
        self._move(self._index[channel], entry_id)

    def render_shared(self, entries: Sequence[Entry], rendered: dict[bytes, bytes]) -> bytes:
        """``render`` for live entries of one channel, shared through ``rendered``: clients
        on the same channels at the same positions get the same bytes, rendered once."""
        before = self.cursor()
        chunk = rendered.get(before)
        if chunk is None:
            chunk = rendered[before] = self.render(entries)
        else:
            self._move(self._index[entries[-1].channel], entries[-1].id)
        return chunk

    def _gap_frame(self, gap: Gap) -> bytes:
        self._move(self._index[gap.channel], gap.resumed_after)
        payload = HistoryGapPayload(
            channel=gap.channel,
            reason="lost" if gap.reason == "lost" else "trimmed",
            requested=gap.requested.decode(),
            resumed_after=gap.resumed_after.decode(),
        )
        return control_frame(self.cursor(), HistoryGap(data=payload))

    def closing(self, reason: str, retry_ms: int) -> bytes:
        """The last bytes of a stream the gateway ends: why, and how soon to come back."""
        payload = ReconnectPayload(
            reason="shutdown" if reason == "shutdown" else "slow_consumer", retry_ms=retry_ms
        )
        return b"retry: %d\n\n" % retry_ms + control_frame(self.cursor(), Reconnect(data=payload))


def cursor_invalid_notice(reason: str, value: str) -> CursorInvalid:
    return CursorInvalid(
        data=CursorInvalidPayload(reason=reason, value=value, starting_from="live")
    )
