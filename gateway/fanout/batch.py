"""The batch of one channel's live entries that one flush hands out."""

from __future__ import annotations

from gateway.broker import Entry


class LiveBatch:
    """The live entries of one channel gathered by one flush, shared by every local stream."""

    __slots__ = ("channel", "entries", "first_prev", "last", "size")

    def __init__(self, entries: list[Entry], size: int) -> None:
        self.entries = entries
        self.size = size
        """Payload bytes, for the sinks' limits."""
        self.first_prev = entries[0].prev
        """Where a stream must be for this batch to follow on without a gap."""
        self.last = entries[-1]
        self.channel = self.last.channel
