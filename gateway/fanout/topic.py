"""One subscribed channel in the hub.

A topic's streams are either in a ``Group`` (written by the flush, all at the
group's positions) or on their own (pushed to through their ``ChannelSink``).
"""

from __future__ import annotations

import asyncio

from gateway.broker import Entry
from gateway.fanout.batch import LiveBatch
from gateway.fanout.group import Group
from gateway.fanout.sink import ChannelSink


class Topic:
    """A subscribed channel: its streams, and the entries waiting for the next flush."""

    __slots__ = (
        "acked",
        "channel",
        "flushed_id",
        "groups",
        "last_id",
        "pending",
        "pending_bytes",
        "received",
        "sinks",
        "subscribers",
    )

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.subscribers = 0
        """Streams attached to the channel, grouped or not: the last to leave unsubscribes it."""
        self.sinks: set[ChannelSink] = set()
        """Sinks of the streams that are not in a group: each flush pushes its batch to them."""
        self.groups: set[Group] = set()
        """Groups with this channel: each flush hands them its batch."""
        self.pending: list[Entry] = []
        self.pending_bytes = 0
        self.received = 0
        """Entries received on this subscription: moves with every one (``Hub.live_mark``)."""
        self.acked = asyncio.Event()
        self.last_id: bytes | None = None
        """Newest entry id received on the current connection (pending ones included)."""
        self.flushed_id: bytes | None = None
        """Id of the newest entry handed out by a flush: a group's position on this channel.
        None until known (no entry yet on this connection, and no tip learned)."""

    def take_batch(self) -> LiveBatch:
        batch = LiveBatch(self.pending, self.pending_bytes)
        self.pending, self.pending_bytes = [], 0
        self.flushed_id = batch.last.id
        return batch

    def forget_positions(self) -> None:
        """The live flow was interrupted: entries may be missed, known ids are no longer news."""
        self.acked.clear()
        self.last_id = self.flushed_id = None
