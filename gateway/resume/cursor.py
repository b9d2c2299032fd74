"""Cursors: the SSE ``id:`` that lets a client resume on any gateway replica.

A cursor lists, per channel of a subscription, the id of the last entry the
client has been given: ``echo=1732480000123-0,reverse_echo=1732480000100-0``.
Channel names never contain ``=`` or ``,`` (see ``contract.channels``), so the
text is unambiguous, readable and free of newlines. This module is the only one
that reads or writes cursor text.

Accepted as a resume position (``Last-Event-ID`` or ``?last_event_id=``):

- a cursor as above; a channel missing from it starts live;
- ``earliest``: every channel from its earliest retained entry;
- ``live`` (the default): only events published after the stream opened.

Per channel, ``earliest`` and ``live`` may also stand in place of an id.

``StreamPositions`` is where an open stream is in each of its channels: the one
owner of that position, and the cursor text that says it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from contract.channels import MAX_CHANNEL_LENGTH, is_valid_channel
from gateway.broker import BEFORE_ALL, StreamKey, stream_key
from gateway.fanout import Snapshot

EARLIEST: Final = "earliest"
LIVE: Final = "live"
_EARLIEST = EARLIEST.encode()

# [0-9], not \d: \d would accept other scripts' digits, and int() would read them.
_ID_RE = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
_MAX_ID_PART = 2**64 - 1
_LONGEST_ID = 2 * len(str(_MAX_ID_PART)) + 1


class CursorError(ValueError):
    """A Last-Event-ID that cannot be used; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def parse_stream_id(text: str) -> StreamKey:
    """``"17-3"`` -> ``(17, 3)``; ``"17"`` -> ``(17, 0)``. Raises ValueError."""
    match = _ID_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text[:40]!r} is not a stream id like 1732480000123-0")
    ms, seq = int(match[1]), int(match[2] or 0)
    if ms > _MAX_ID_PART or seq > _MAX_ID_PART:
        raise ValueError(f"{text[:40]!r} is out of range for a stream id")
    return ms, seq


Position = StreamKey | str
"""Where a channel resumes: after a stream id, or ``EARLIEST`` / ``LIVE``."""


@dataclass(frozen=True)
class Cursor:
    """A parsed resume position: per channel a ``Position``, and one for the rest."""

    positions: Mapping[str, Position] = field(default_factory=dict)
    default: str = LIVE

    def position(self, channel: str) -> Position:
        return self.positions.get(channel, self.default)

    @property
    def kind(self) -> str:
        """``cursor`` when it names positions, else its default (``live`` or ``earliest``)."""
        return "cursor" if self.positions else self.default


def parse_cursor(text: str | None, *, max_length: int) -> Cursor:
    """Parse a Last-Event-ID. Empty or missing means live. Raises CursorError."""
    if text is None:
        return Cursor()
    text = text.strip()
    if not text or text == LIVE:
        return Cursor()
    if text == EARLIEST:
        return Cursor(default=EARLIEST)
    if len(text) > max_length:
        raise CursorError(f"it is {len(text)} characters long, the limit is {max_length}")
    positions: dict[str, Position] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise CursorError(f"{part[:60]!r} is not of the form channel=position")
        if not is_valid_channel(name):
            raise CursorError(f"{name[:60]!r} is not a valid channel name")
        if name in positions:
            raise CursorError(f"channel {name!r} appears twice")
        if value in (EARLIEST, LIVE):
            positions[name] = value
            continue
        try:
            positions[name] = parse_stream_id(value)
        except ValueError as exc:
            raise CursorError(str(exc)) from None
    return Cursor(positions)


def format_cursor(positions: Iterable[tuple[str, bytes | str]]) -> str:
    """Cursor text for ``[(channel, id or "earliest"/"live"), ...]``."""
    return b",".join(
        _part(name.encode() + b"=", pos.encode() if isinstance(pos, str) else pos)
        for name, pos in positions
    ).decode()


def single_channel_cursor(channel: str, entry_id: bytes) -> bytes:
    """The cursor of a stream of ``channel`` alone after entry ``entry_id``."""
    return _part(channel.encode() + b"=", entry_id)


def _part(name_prefix: bytes, position: bytes | None) -> bytes:
    return name_prefix + (_EARLIEST if position is None else position)


def longest_cursor(channels: int) -> int:
    """Length of the longest cursor a subscription of ``channels`` channels can carry."""
    per_channel = MAX_CHANNEL_LENGTH + 1 + max(_LONGEST_ID, len(EARLIEST))
    return channels * per_channel + (channels - 1)


def printable_prefix(text: str, limit: int = 80) -> str:
    """A safe excerpt of untrusted text for a control event."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


@functools.lru_cache(maxsize=4096)
def _cursor_prefixes(channels: tuple[str, ...]) -> tuple[bytes, ...]:
    """``channel=`` of each channel, shared by the streams of the same channels."""
    return tuple(name.encode() + b"=" for name in channels)


class StreamPositions:
    """Where one stream is in each of its channels, and the cursor text that says so.

    A position is the id of the last entry the client was given in that channel
    (None: before the earliest retained entry). It moves only as frames are
    rendered for the client, or when a fan-out group hands the stream back.
    """

    __slots__ = ("_prefixes", "_text", "ids", "keys")

    def __init__(self, channels: Sequence[str]) -> None:
        self._prefixes = _cursor_prefixes(tuple(channels))
        self.ids: list[bytes | None] = [None] * len(channels)
        self.keys: list[StreamKey] = [BEFORE_ALL] * len(channels)
        self._text: bytes | None = None

    def text(self) -> bytes:
        """The cursor: ``channel=position`` for every channel, in order."""
        text = self._text
        if text is None:
            prefixes, ids = self._prefixes, self.ids
            if len(ids) == 1:
                text = _part(prefixes[0], ids[0])
            else:
                pairs = zip(prefixes, ids, strict=True)
                text = b",".join(_part(prefix, pos) for prefix, pos in pairs)
            self._text = text
        return text

    def advance(self, index: int, entry_id: bytes, key: StreamKey) -> None:
        """The client was given the entry ``entry_id`` (key ``key``) of channel ``index``."""
        self.ids[index] = entry_id
        self.keys[index] = key
        self._text = None

    def move(self, index: int, entry_id: bytes | None) -> None:
        """Channel ``index`` continues after ``entry_id`` (None: before all entries)."""
        self.ids[index] = entry_id
        self.keys[index] = BEFORE_ALL if entry_id is None else stream_key(entry_id)
        self._text = None

    def snapshot(self) -> Snapshot:
        return tuple(self.ids)

    def restore(self, snapshot: Snapshot) -> None:
        """Take the positions a fan-out group reached for this stream."""
        for index, entry_id in enumerate(snapshot):
            if entry_id != self.ids[index]:
                self.move(index, entry_id)

    def copy(self) -> StreamPositions:
        twin = StreamPositions.__new__(StreamPositions)
        twin._prefixes = self._prefixes
        twin.ids = list(self.ids)
        twin.keys = list(self.keys)
        twin._text = self._text
        return twin
