"""The open streams of a gateway process: counted, kept alive, and ended at shutdown.

sse-starlette runs a ping task per stream; here one task pings every stream that
wrote nothing during the last interval, with one shared comment per round.
When the shutdown grace period is over, streams still open (a client that stopped
reading during the drain) are cancelled, as sse-starlette's task group does. Each
round also gives free heap memory back to the system once a burst of streams has
gone (``gateway.heap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Protocol

from gateway.heap import trim_after_burst
from gateway.metrics import Metrics
from gateway.sse.output import StreamOutput

log = logging.getLogger(__name__)

PINGS_PER_TURN = 512
"""Pings written before the event loop gets a turn: a round never stalls live delivery long."""


def ping_comment() -> bytes:
    """sse-starlette's keep-alive comment: ``: ping - <UTC time>``."""
    return b": ping - %s\r\n\r\n" % str(datetime.now(UTC)).encode()


class Stream(Protocol):
    """An open stream as ``OpenStreams`` keeps it (``gateway.sse.response.OpenStream``)."""

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task that runs it now; None while a fan-out group writes it."""
        ...

    def cancel(self) -> None:
        """End it now (the shutdown grace period is over)."""
        ...


class OpenStreams:
    """Every open stream's output and stream, for /stats, keep-alive pings and forced ends."""

    def __init__(self, ping_interval: float, metrics: Metrics) -> None:
        self.ping_interval = ping_interval
        self._metrics = metrics
        self.open = 0
        self._streams: dict[StreamOutput, Stream] = {}
        self._forced: set[StreamOutput] = set()
        self._pinger: asyncio.Task[None] | None = None
        self._peak = 0
        """Most streams open at once since the heap was last trimmed."""

    def add(self, output: StreamOutput, stream: Stream) -> None:
        self.open += 1
        self._metrics.streams_opened += 1
        self._streams[output] = stream
        if self.open > self._peak:
            self._peak = self.open

    def discard(self, output: StreamOutput) -> None:
        if self._streams.pop(output, None) is not None:
            self.open -= 1
        self._forced.discard(output)

    def was_forced(self, output: StreamOutput) -> bool:
        """Whether ``cancel_all`` ended this stream (its cancellation is not an error)."""
        return output in self._forced

    def cancel_all(self) -> None:
        """End every stream still open now (the shutdown grace period is over)."""
        if self._streams:
            log.warning(
                "ending streams still open after the grace period",
                extra={"streams": len(self._streams)},
            )
        for output, stream in list(self._streams.items()):
            self._forced.add(output)
            stream.cancel()

    async def __aenter__(self) -> OpenStreams:
        self._pinger = asyncio.create_task(self._ping_forever(), name="keep-alive")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        # A stream handed back by its group runs in a task of the gateway's, which the
        # server does not await: a stream whose task still runs when the app stops is
        # ended here.
        own = [s.task for s in self._streams.values() if s.task is not None]
        for task in own:
            task.cancel()
        if own:
            await asyncio.wait(own)

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            if trim_after_burst(self._peak, self.open):  # memory back after a burst left
                self._peak = self.open
            comment = ping_comment()
            pinged = 0
            for n, output in enumerate(list(self._streams)):
                if output.wrote:
                    output.wrote = False  # active this round: no ping needed
                else:
                    # Refused while a write is in flight: that stream is not idle.
                    pinged += output.write_now(comment)
                    output.wrote = False
                if n % PINGS_PER_TURN == PINGS_PER_TURN - 1:
                    await asyncio.sleep(0)
            self._metrics.bytes_written += pinged * len(comment)
