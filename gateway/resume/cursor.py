"""Cursors: the SSE ``id:`` that lets a client resume on any gateway replica.

A cursor lists, per channel of a subscription, the id of the last entry the
client has been given: ``echo=1732480000123-0,reverse_echo=1732480000100-0``.
Channel names never contain ``=`` or ``,`` (see ``contract.channels``), so the
text is unambiguous, readable and free of newlines.

Accepted as a resume position (``Last-Event-ID`` or ``?last_event_id=``):

- a cursor as above; a channel missing from it starts live;
- ``earliest``: every channel from its earliest retained entry;
- ``live`` (the default): only events published after the stream opened.

Per channel, ``earliest`` and ``live`` may also stand in place of an id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from contract.channels import MAX_CHANNEL_LENGTH, is_valid_channel

EARLIEST: Final = "earliest"
LIVE: Final = "live"

StreamKey = tuple[int, int]
"""A Redis stream id as comparable integers: ``b"17-3"`` -> ``(17, 3)``."""

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


def stream_key(entry_id: bytes) -> StreamKey:
    """Key of an id that came from Redis (always ``ms-seq``)."""
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


def format_stream_id(key: StreamKey) -> bytes:
    return b"%d-%d" % key


Position = StreamKey | str
"""Where a channel resumes: after a stream id, or ``EARLIEST`` / ``LIVE``."""


@dataclass(frozen=True)
class Cursor:
    """A parsed resume position: per channel a ``Position``, and one for the rest."""

    positions: Mapping[str, Position] = field(default_factory=dict)
    default: str = LIVE

    def position(self, channel: str) -> Position:
        return self.positions.get(channel, self.default)


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
    """Render ``[(channel, position), ...]`` as cursor text."""
    return ",".join(
        f"{name}={pos.decode() if isinstance(pos, bytes) else pos}" for name, pos in positions
    )


def longest_cursor(channels: int) -> int:
    """Length of the longest cursor a subscription of ``channels`` channels can carry."""
    per_channel = MAX_CHANNEL_LENGTH + 1 + max(_LONGEST_ID, len(EARLIEST))
    return channels * per_channel + (channels - 1)


def printable_prefix(text: str, limit: int = 80) -> str:
    """A safe excerpt of untrusted text for a control event."""
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
