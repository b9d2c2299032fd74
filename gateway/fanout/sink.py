"""Sinks: the hub's bounded hand-off point for one client on one channel.

The hub pushes batches of entries in; the client's channel stream takes
everything buffered in one call. A sink never grows beyond its limits: the
client is cut (``SlowConsumer``) and resumes from history instead.

While the client's stream waits (``wait``) with nothing buffered, a batch may
skip the buffer: ``deliver`` (set by the subscription) writes it to the client
at once, which saves waking the stream's task for every live event. A client that keeps
up that way is then seated in its channel's fan-out (``gateway.fanout``) and
skips its sink altogether until something needs its stream's task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from enum import Enum
from typing import TYPE_CHECKING

from gateway.broker.entry import Entry, LiveBatch

if TYPE_CHECKING:
    from gateway.fanout.channel import ChannelFanout, Seat


class SinkClosed(Exception):
    """The stream must end; ``reason`` says why (``shutdown`` or ``slow_consumer``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SlowConsumer(SinkClosed):
    def __init__(self) -> None:
        super().__init__("slow_consumer")


class _State(Enum):
    OPEN = 0
    OVERFLOWED = 1
    CLOSED = 2


class ChannelSink:
    """Buffered live entries of one channel for one client."""

    __slots__ = (
        "_batches",
        "_bytes",
        "_count",
        "_max_bytes",
        "_max_events",
        "_resync",
        "_state",
        "_waiter",
        "channel",
        "close_reason",
        "deliver",
        "fanout",
        "seat",
    )

    def __init__(self, channel: str, *, max_events: int, max_bytes: int) -> None:
        self.channel = channel
        self._batches: list[Sequence[Entry]] = []
        self._count = 0
        self._bytes = 0
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._resync = False
        self._state = _State.OPEN
        self._waiter: asyncio.Future[None] | None = None
        self.close_reason = ""
        self.deliver: Callable[[LiveBatch], bool] | None = None
        """Writes a batch straight to an idle client; False when it must be buffered."""
        self.seat: Seat | None = None
        """Set for a client on this channel alone that may be seated in the fan-out."""
        self.fanout: ChannelFanout | None = None
        """The channel's fan-out while the sink is attached to it."""

    @property
    def idle(self) -> bool:
        """The stream waits (``wait``) with nothing buffered, nothing to resync."""
        waiter = self._waiter
        return (
            waiter is not None
            and not waiter.done()  # cancelled: the stream is ending
            and not self._batches
            and not self._resync
            and self._state is _State.OPEN
        )

    def push(self, batch: LiveBatch) -> None:
        """Add a batch; called by the hub, never blocks."""
        if self._state is not _State.OPEN:
            return
        if self.idle:  # the stream waits with nothing pending: it may take the short way
            deliver = self.deliver
            if deliver is not None and deliver(batch):
                return
        self._batches.append(batch.entries)
        self._count += len(batch.entries)
        self._bytes += batch.size
        if self._count > self._max_events or self._bytes > self._max_bytes:
            self._state = _State.OVERFLOWED
            self._batches = []  # the client resumes from history; free the memory now
        self._wake()

    def request_resync(self) -> None:
        """The live flow may have missed entries (Redis reconnect): re-read history."""
        self._leave_seat()
        self._resync = True
        self._wake()

    def close(self, reason: str) -> None:
        """End the stream at its next take (shutdown)."""
        self._leave_seat()
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
            self.close_reason = reason
        self._wake()

    def _leave_seat(self) -> None:
        """The stream's task takes over: the position it reached while seated comes back."""
        if self.fanout is not None:
            self.fanout.unseat(self)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def ready(self) -> bool:
        """``take`` has something to return (or to raise): no need to ``wait``."""
        return bool(self._batches) or self._resync or self._state is not _State.OPEN

    def wait(self) -> asyncio.Future[None]:
        """A future that is set once ``ready``. The stream awaits it in its own frame: a
        coroutine here would be one more frame kept alive by every idle stream."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def take(self) -> tuple[list[Sequence[Entry]], bool]:
        """(Buffered batches, whether a resync was requested), once ``ready``."""
        self._waiter = None
        if self._state is _State.OVERFLOWED:
            raise SlowConsumer
        if self._state is _State.CLOSED:
            raise SinkClosed(self.close_reason)
        batches, resync = self._batches, self._resync
        self._batches, self._count, self._bytes, self._resync = [], 0, 0, False
        return batches, resync
