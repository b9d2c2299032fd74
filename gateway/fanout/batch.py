"""The batch of one channel's live entries that one flush hands out."""

from __future__ import annotations

from itertools import pairwise

from gateway.broker import Entry


class LiveBatch:
    """The live entries of one channel gathered by one flush, shared by every local stream."""

    __slots__ = ("channel", "entries", "first_prev", "last", "linked", "size")

    def __init__(self, entries: list[Entry], size: int) -> None:
        self.entries = entries
        self.size = size
        """Payload bytes, for the sinks' limits."""
        self.first_prev = entries[0].prev
        """Where a stream must be for this batch to follow on without a gap."""
        self.last = entries[-1]
        self.channel = self.last.channel
        self.linked = all(entry.prev == before.id for before, entry in pairwise(entries))
        """Whether each entry names the one before it: notifications sent after ``WAIT``
        (replicas confirming) can arrive out of order or twice, within a batch as well."""
