"""Groups: streams on the same channels at the same positions, written as one.

Most streams of a busy channel keep up: their position is the newest entry of
each of their channels, their task waits with nothing buffered and their socket
takes writes at once. Such streams need the same bytes, so a ``Group`` (one per
set of channels) holds them: each flush it renders the batches of its channels
once, with its own cursor, frames the chunk once and writes it to every member
in one loop, with no per-stream bookkeeping.

While a stream is a member, its positions are the group's: the group owns them.
The stream's own positions wait, unread, until the group hands it back
(``Member.released``) with the positions it reached, which happens as soon as
its own task must act: its socket is full or gone (it also gets the batches of
that flush through its sinks), a batch does not follow on from the group's
position (something was missed: every member reads history), the stream is
closed or must resync. A stream joins when its task is idle and its positions
are the channels' flushed ids, which are always a group's positions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from gateway.broker import Entry
from gateway.fanout.batch import LiveBatch
from gateway.fanout.sink import ChannelSink
from gateway.metrics import ChannelCounts, Metrics
from gateway.sse import SharedChunk, StreamOutput

Channels = tuple[str, ...]
Snapshot = tuple[bytes | None, ...]
"""A stream's position in each of its channels, in the order of its channels."""


class Renderer(Protocol):
    """The group's positions, and the SSE bytes of entries at them (``gateway.resume``)."""

    def position(self, index: int) -> bytes | None:
        """The id of the last entry given in channel ``index``; None: before all."""
        ...

    def snapshot(self) -> Snapshot: ...

    def render(self, index: int, entries: Sequence[Entry]) -> bytes:
        """The frames of ``entries`` of channel ``index``, advancing the positions past each."""
        ...


class ChannelStreams(Protocol):
    """What a group changes on each of its channels' topics (``gateway.fanout.topic.Topic``)."""

    sinks: set[ChannelSink]
    """Sinks pushed to by the flush: a member's are taken out while it is in the group."""
    groups: set[Group]


class Member(Protocol):
    """A stream that may be written by a group (``gateway.resume.Subscription``)."""

    def released(self, positions: Snapshot) -> None:
        """Back to its own task: it was given everything up to ``positions``."""
        ...


class Group:
    """Members on ``channels``, all at the positions of ``renderer``."""

    __slots__ = (
        "_batches",
        "_index",
        "_members",
        "_metrics",
        "_registry",
        "_renderer",
        "_sinks",
        "_topics",
        "channels",
    )

    def __init__(
        self,
        channels: Channels,
        topics: Sequence[ChannelStreams],
        renderer: Renderer,
        registry: dict[Channels, Group],
        metrics: Metrics,
    ) -> None:
        self.channels = channels
        self._metrics = metrics
        self._topics = topics
        self._index = {channel: i for i, channel in enumerate(channels)}
        self._renderer = renderer
        self._members: dict[Member, StreamOutput] = {}
        """Every member, and where the group writes it."""
        self._sinks: dict[Member, Sequence[ChannelSink]] = {}
        """Every member's sinks, in the order of the channels."""
        self._batches: list[LiveBatch] = []
        self._registry = registry
        registry[channels] = self
        for topic in topics:
            topic.groups.add(self)

    def __len__(self) -> int:
        return len(self._members)

    def at(self, positions: Snapshot) -> bool:
        """Whether the group's positions are ``positions``."""
        return self._renderer.snapshot() == positions

    def add(self, member: Member, output: StreamOutput, sinks: Sequence[ChannelSink]) -> None:
        """Take ``member`` in; its positions must be the group's (``at``)."""
        self._members[member] = output
        self._sinks[member] = sinks
        for topic, sink in zip(self._topics, sinks, strict=True):
            topic.sinks.discard(sink)

    def release(self, member: Member) -> None:
        """Hand ``member`` back to its own task, at the group's positions."""
        if member in self._members:
            self._leave(member, self._renderer.snapshot())

    def dissolve(self) -> None:
        """Hand every member back, at the group's positions (a resync or a shutdown follows)."""
        positions = self._renderer.snapshot()
        for member in list(self._members):
            self._leave(member, positions)

    def take(self, batch: LiveBatch) -> bool:
        """Note a batch of one of the channels; True if it is the first of this flush."""
        self._batches.append(batch)
        return len(self._batches) == 1

    def flush(self) -> None:
        """Write this flush's batches to every member (called once per flush by the hub)."""
        batches, self._batches = self._batches, []
        if not batches or not self._members:
            return
        renderer, index = self._renderer, self._index
        before = renderer.snapshot()
        for batch in batches:
            if not batch.linked or batch.first_prev != renderer.position(index[batch.channel]):
                # Something was missed: every member reads history through its own feeds.
                for member in list(self._members):
                    self._leave(member, before, batches)
                return
        if len(batches) == 1:
            data = renderer.render(index[batches[0].channel], batches[0].entries)
            entries = len(batches[0].entries)
        else:
            data = b"".join(renderer.render(index[b.channel], b.entries) for b in batches)
            entries = sum(len(b.entries) for b in batches)
        chunk = SharedChunk(data)
        members = self._members
        fallen = [member for member, output in members.items() if not output.write_shared(chunk)]
        # Counted once per flush, not per member: a group of one is the cheap case to keep cheap.
        written = len(members) - len(fallen)
        metrics = self._metrics
        metrics.deliveries += written * entries
        metrics.bytes_written += written * len(data)
        if metrics.channels is not None:
            self._count_channels(metrics.channels, batches, written)
        for member in fallen:
            self._leave(member, before, batches)

    @staticmethod
    def _count_channels(
        channels: ChannelCounts, batches: Sequence[LiveBatch], written: int
    ) -> None:
        for batch in batches:
            channels.deliveries[channels.label(batch.channel)] += written * len(batch.entries)

    def _leave(self, member: Member, positions: Snapshot, unsent: Sequence[LiveBatch] = ()) -> None:
        del self._members[member]
        sinks = self._sinks.pop(member)
        for topic, sink in zip(self._topics, sinks, strict=True):
            topic.sinks.add(sink)
        member.released(positions)
        for batch in unsent:
            sinks[self._index[batch.channel]].push(batch)
        if not self._members:
            self._retire()

    def _retire(self) -> None:
        for topic in self._topics:
            topic.groups.discard(self)
        if self._registry.get(self.channels) is self:
            del self._registry[self.channels]
