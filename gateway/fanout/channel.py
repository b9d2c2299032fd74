"""One channel's local clients, and how each live batch reaches them.

Most clients of a busy channel are on that channel alone and keep up: their
position is the channel's newest entry, their stream's task waits with nothing
buffered, their socket takes writes at once. Such a client gets a *seat*: a
flush writes the batch's chunk (framed once for everyone) to every seated
client in one tight loop, without touching its sink, feed or cursor. A seated
client's position is the fan-out's ``last`` entry; it is written back into the
client's feed and cursor when the client leaves its seat, which it does as
soon as anything else must happen: its socket is full or gone, a batch does not
link up with ``last`` (something was missed), its stream is closed or must
resync. Every other client gets the batch through its sink, as before; a
client whose sink took a batch the short way and is in step again is seated.
Clients on several channels have their own arrangement, ``gateway.fanout.lockstep``;
the fan-out keeps their sinks aside while they are in one and tells the
lockstep about each batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from gateway._fastpath.transport import chunk_frame
from gateway.broker.entry import Entry, LiveBatch

if TYPE_CHECKING:
    from gateway.fanout.lockstep import Lockstep
    from gateway.fanout.sink import ChannelSink


class Seat(Protocol):
    """What a client on one channel alone offers the fan-out (``SoloLiveWriter``)."""

    def write_framed(self, framed: bytes) -> bool:
        """Write an already framed chunk now; False (nothing written) if it cannot."""
        ...

    def in_step(self, last: Entry) -> bool:
        """Whether the client's position is ``last`` and its socket takes writes now."""
        ...

    def sync(self, last: Entry) -> None:
        """The client was given everything up to ``last`` while seated."""
        ...


class ChannelFanout:
    """The sinks of one channel: seated ones written in one loop, the rest pushed to."""

    __slots__ = ("_grouped", "_last", "_seated", "_unseated", "locksteps")

    def __init__(self) -> None:
        self._seated: dict[ChannelSink, Seat] = {}
        self._unseated: set[ChannelSink] = set()
        self._grouped: dict[ChannelSink, Lockstep] = {}
        self._last: Entry | None = None
        """The newest entry every seated client was given."""
        self.locksteps: set[Lockstep] = set()
        """Locksteps with members on this channel: the hub hands them each batch."""

    def __len__(self) -> int:
        return len(self._seated) + len(self._unseated) + len(self._grouped)

    def __contains__(self, sink: object) -> bool:
        return sink in self._unseated or sink in self._seated or sink in self._grouped

    def __iter__(self) -> Iterator[ChannelSink]:
        """Every sink; a snapshot, so closing them while iterating is safe."""
        return iter([*self._seated, *self._grouped, *self._unseated])

    @property
    def seated(self) -> int:
        """Sinks written without their own bookkeeping: seated or in a lockstep."""
        return len(self._seated) + len(self._grouped)

    def in_lockstep(self, sink: ChannelSink) -> bool:
        return sink in self._grouped

    def enter_lockstep(self, sink: ChannelSink, lockstep: Lockstep) -> None:
        self._unseated.discard(sink)
        self._grouped[sink] = lockstep
        self.locksteps.add(lockstep)

    def leave_lockstep(self, sink: ChannelSink, *, retire: bool) -> None:
        """``sink`` goes back to getting batches pushed; ``retire``: its lockstep is empty."""
        lockstep = self._grouped.pop(sink, None)
        if lockstep is not None:
            self._unseated.add(sink)
            if retire:
                self.locksteps.discard(lockstep)

    def add(self, sink: ChannelSink) -> None:
        self._unseated.add(sink)
        sink.fanout = self

    def discard(self, sink: ChannelSink) -> None:
        """Forget a sink whose stream ended (its position no longer matters)."""
        lockstep = self._grouped.get(sink)
        if lockstep is not None:
            lockstep.drop(sink)
        if self._seated.pop(sink, None) is None:
            self._unseated.discard(sink)
        sink.fanout = None

    def unseat(self, sink: ChannelSink) -> None:
        """Hand a seated client back to its own stream, at the position it reached."""
        lockstep = self._grouped.get(sink)
        if lockstep is not None:
            lockstep.release(sink)
            return
        seat = self._seated.pop(sink, None)
        if seat is None:
            return
        assert self._last is not None
        seat.sync(self._last)
        self._unseated.add(sink)

    def deliver(self, batch: LiveBatch) -> None:
        """Give ``batch`` to every client of the channel; called by the hub's flush."""
        seated = self._seated
        if seated:
            last = self._last
            if last is not None and batch.first_prev == last.id:
                framed = chunk_frame(batch.solo_chunk())
                fallen = [sink for sink, seat in seated.items() if not seat.write_framed(framed)]
            else:
                fallen = list(seated)  # entries were missed: every client checks history
            for sink in fallen:
                self.unseat(sink)
        last = self._last = batch.last
        if not self._unseated:
            return
        joining: list[tuple[ChannelSink, Seat]] = []
        for sink in tuple(self._unseated):
            sink.push(batch)
            seat = sink.seat
            if seat is not None and sink.idle and seat.in_step(last):
                joining.append((sink, seat))
        for sink, seat in joining:
            if sink in self._unseated:  # not detached or closed meanwhile
                self._unseated.discard(sink)
                seated[sink] = seat
