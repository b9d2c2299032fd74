"""Sinks: the hub's bounded hand-off point for one stream on one channel.

The hub pushes live batches in; the stream's feed takes everything buffered in
one call. A sink never grows beyond its limits: the stream is cut
(``SlowConsumer``) and its client resumes from history instead.

A stream that keeps up does not use its sinks while it is in a ``Group``:
the group writes to it, and the sinks wait, empty, until the stream is handed
back to its own task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from enum import Enum

from gateway.broker import Entry
from gateway.fanout.batch import LiveBatch


class SinkClosed(Exception):
    """The stream must end; ``reason`` says why (``shutdown``, ``slow_consumer``, ...)."""

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
    """Buffered live entries of one channel for one stream."""

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
        self._batches.append(batch.entries)
        self._count += len(batch.entries)
        self._bytes += batch.size
        if self._count > self._max_events or self._bytes > self._max_bytes:
            self._state = _State.OVERFLOWED
            self._batches = []  # the client resumes from history; free the memory now
        self._wake()

    def request_resync(self) -> None:
        """The live flow may have missed entries (Redis reconnect): re-read history."""
        self._resync = True
        self._wake()

    def close(self, reason: str) -> None:
        """End the stream at its next take."""
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
            self.close_reason = reason
        self._wake()

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

    def stop_waiting(self) -> None:
        """Forget the future of ``wait`` (the stream's task has left: its group wakes it)."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.cancel()

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
