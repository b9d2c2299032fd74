"""Clients on the same several channels at the same positions, written as one.

A client on several channels carries its own cursor in every frame, so the
seats of ``gateway.fanout`` (one chunk per batch for every client of a channel)
do not fit it. But clients on the same channels that keep up with all of them
are at the same positions and need the same bytes: a ``Lockstep`` holds such
clients, renders each flush's batches of its channels once, with its own
cursor, and writes the framed chunk to every member in one loop.

As with seats, a member's positions live in the lockstep meanwhile. They are
written back into the member's feeds and cursor as soon as its own stream must
act: a write fails (socket full or gone; the member then gets that flush's
batches through its sinks), a batch does not link up (every member leaves), the
stream is closed or must resync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from gateway._fastpath.transport import chunk_frame
from gateway.broker.entry import LiveBatch
from gateway.fanout.sink import ChannelSink
from gateway.resume.frames import FrameWriter

Channels = tuple[str, ...]


class Member(Protocol):
    """A client on several channels (``LockstepLiveWriter``)."""

    @property
    def sinks(self) -> Sequence[ChannelSink]: ...

    def write_framed(self, framed: bytes) -> bool:
        """Write an already framed chunk now; False (nothing written) if it cannot."""
        ...

    def sync(self, positions: Mapping[str, bytes]) -> None:
        """The member was given everything up to ``positions`` while in the lockstep."""
        ...


class Lockstep:
    """Members on ``channels``, all at ``positions``."""

    __slots__ = (
        "_batches",
        "_by_sink",
        "_members",
        "_registry",
        "_writer",
        "channels",
        "positions",
    )

    def __init__(
        self, channels: Channels, positions: Mapping[str, bytes], registry: dict[Channels, Lockstep]
    ) -> None:
        self.channels = channels
        self.positions = dict(positions)
        self._writer = FrameWriter(channels, [positions[c] for c in channels])
        self._members: dict[Member, None] = {}
        self._by_sink: dict[ChannelSink, Member] = {}
        self._batches: list[LiveBatch] = []
        self._registry = registry
        registry[channels] = self

    def __len__(self) -> int:
        return len(self._members)

    def join(self, member: Member) -> None:
        self._members[member] = None
        for sink in member.sinks:
            self._by_sink[sink] = member
            assert sink.fanout is not None
            sink.fanout.enter_lockstep(sink, self)

    def release(self, sink: ChannelSink) -> None:
        """Hand the member of ``sink`` back to its own stream, at the lockstep's positions."""
        member = self._by_sink.get(sink)
        if member is not None:
            self._leave(member, self.positions)

    def drop(self, sink: ChannelSink) -> None:
        """The member of ``sink`` is gone (its stream ended): no positions to hand back."""
        member = self._by_sink.get(sink)
        if member is not None:
            self._leave(member, None)

    def take(self, batch: LiveBatch) -> bool:
        """Note a batch of one of the channels; True if it is the first of this flush."""
        self._batches.append(batch)
        return len(self._batches) == 1

    def flush(self) -> None:
        """Write this flush's batches to every member (called once per flush by the hub)."""
        batches, self._batches = self._batches, []
        if not batches or not self._members:
            return
        before = dict(self.positions)
        for batch in batches:
            if batch.first_prev != self.positions[batch.last.channel]:
                # Something was missed: every member reads history through its own feeds.
                for member in list(self._members):
                    self._leave(member, before, batches)
                return
            self.positions[batch.last.channel] = batch.last.id
        writer = self._writer
        chunk = b"".join(writer.render(batch.entries) for batch in batches)
        framed = chunk_frame(chunk)
        failed = [member for member in self._members if not member.write_framed(framed)]
        for member in failed:
            self._leave(member, before, batches)

    def _leave(
        self,
        member: Member,
        positions: Mapping[str, bytes] | None,
        unsent: Sequence[LiveBatch] = (),
    ) -> None:
        del self._members[member]
        for sink in member.sinks:
            del self._by_sink[sink]
            if sink.fanout is not None:
                sink.fanout.leave_lockstep(sink, retire=not self._members)
        if positions is not None:
            member.sync(positions)
        for batch in unsent:
            for sink in member.sinks:
                if sink.channel == batch.last.channel:
                    sink.push(batch)
        if not self._members and self._registry.get(self.channels) is self:
            del self._registry[self.channels]
