"""A client that reconnects the way a browser's EventSource does.

When a stream ends (the server closed it, or the connection broke), it waits the
last ``retry:`` the server sent, then requests the same URL again with the last id it
saw in the ``Last-Event-ID`` header. An HTTP error status fails it for good, as it
fails EventSource (``sse_connect`` raises), so a proxy answering 502 during a failover
fails the test instead of being retried around.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from contract.control import CursorInvalid, HistoryGap, Reconnect
from tests.support.sse import Frame, StreamClosed, sse_connect

CONTROL_EVENTS = frozenset(event.event_name for event in (CursorInvalid, HistoryGap, Reconnect))

DEFAULT_RETRY_MS = 3000
"""What browsers wait before the server has sent a ``retry:`` field."""


@dataclass
class Connection:
    """One HTTP response of the client: its frames and when it ended (loop time)."""

    frames: list[Frame] = field(default_factory=list)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    ended_at: float | None = None


class EventSourceClient:
    def __init__(
        self,
        base_url: str,
        channels: Sequence[str],
        *,
        query_last_event_id: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.channels = list(channels)
        self.query_last_event_id = query_last_event_id
        self.last_id: str | None = None
        self.retry_ms = DEFAULT_RETRY_MS
        self.events: list[Frame] = []
        """Channel events, in arrival order."""
        self.controls: list[Frame] = []
        """The gateway's control events (``reconnect``, ``history_gap``, ...)."""
        self.connections: list[Connection] = []
        self.connect_errors = 0

    @property
    def reconnects(self) -> int:
        return len(self.connections) - 1

    async def wait_open(self, timeout: float) -> None:
        """Until the first connection has sent its opening frame."""
        async with asyncio.timeout(timeout):
            while not self.connections:  # noqa: ASYNC110 - the list is filled by run()
                await asyncio.sleep(0.01)
            await self.connections[0].opened.wait()

    async def run(self, count: int, timeout: float) -> list[Frame]:
        """Follow the stream until ``count`` channel events have arrived."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.events) < count:
            connection = Connection()
            self.connections.append(connection)
            try:
                await self._follow(connection, count, deadline)
            except httpx.TransportError:
                self.connect_errors += 1  # EventSource retries a network error
            finally:
                connection.ended_at = loop.time()
            if len(self.events) >= count:
                break
            if loop.time() >= deadline:
                raise AssertionError(
                    f"{len(self.events)} of {count} events after {timeout}s and "
                    f"{len(self.connections)} connections"
                )
            await asyncio.sleep(self.retry_ms / 1000)
        return self.events

    async def _follow(self, connection: Connection, count: int, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        async with sse_connect(
            self.base_url,
            self.channels,
            last_event_id=self.last_id,
            query_last_event_id=self.query_last_event_id,
        ) as stream:
            # sse_connect has read the opening frame (retry and starting cursor) already.
            assert stream.opening is not None
            self._receive(connection, stream.opening)
            with contextlib.suppress(StreamClosed):
                while len(self.events) < count:
                    try:
                        frame = await stream.next_frame(max(deadline - loop.time(), 0.001))
                    except TimeoutError:
                        return
                    self._receive(connection, frame)

    def _receive(self, connection: Connection, frame: Frame) -> None:
        connection.frames.append(frame)
        connection.opened.set()
        # Like EventSource: every id field moves lastEventId, every retry the delay.
        if frame.id is not None:
            self.last_id = frame.id
        if frame.retry is not None:
            self.retry_ms = frame.retry
        if frame.has_data:
            (self.controls if frame.event in CONTROL_EVENTS else self.events).append(frame)
