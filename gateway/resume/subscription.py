"""A client's subscription: its channel feeds merged into one stream of SSE bytes.

Per channel a ``ChannelFeed`` (replay, then live); several feeds are merged with
``aiostream.stream.merge``, and a single feed needs no merging (which saves the
merge's task per channel on the most common subscription). The stream's task
renders what the feeds yield (``frames.render``) and writes it: the opening,
history, gaps, live entries that queued up while it lagged, the closing hint. It
renders in pieces (``frames.pieces``), each only once the one before was written, so
a client that stops reading holds one piece and its socket's buffer, not a page.

Live entries take a shorter way while the stream keeps up. When every feed of
the stream waits on its sink with nothing buffered, its output can take a write
now, and its positions are the channels' flushed ids, the stream joins the
fan-out group of its channels (``Hub.join``): the hub's flush then writes it
with every other stream at those positions, bytes rendered and framed once,
and the stream's task sleeps. The group hands the stream back
(``released``) with its positions as soon as its task must act again.

Given a ``Resumer`` (the fast path's responses), a stream in a group keeps no
sleeping task at all: its feed raises ``Parked``, ``run`` returns True and the
task ends; ``released`` then has the resumer start a task, which calls ``go_on``.

``StreamPositions`` is the one owner of the stream's position in each channel:
the feeds read it, the frames loop and a group that releases the stream move it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiostream import stream

from contract.events import BaseEvent
from gateway.broker import HistoryReader
from gateway.fanout import ChannelSink, Group, Hub, Renderer, SinkClosed, Snapshot
from gateway.metrics import Metrics
from gateway.resume import frames
from gateway.resume.cursor import EARLIEST, Cursor, StreamPositions
from gateway.resume.feed import ChannelFeed, Gap, Item, Parked
from gateway.sse import Resumer, StreamOutput

log = logging.getLogger(__name__)

QUIET_ENDS = frozenset({"disconnect", "write_failed"})
"""Reasons to end a stream that nobody can be told about."""
SHUTDOWN = "shutdown"
TOKEN_EXPIRED = "token_expired"
"""Why a stream opened with a token ends at its ``exp`` (or SSE_AUTH_MAX_STREAM_SECONDS)."""


@dataclass(frozen=True)
class StreamOptions:
    """What every stream of the process shares: its settings and where it counts."""

    retry_ms: int
    shutdown_retry_ms: int
    page_size: int
    metrics: Metrics


class Subscription:
    """One SSE stream's channels, from the opening cursor to the end of the connection."""

    __slots__ = (
        "_channels",
        "_ended",
        "_expiry",
        "_feeds",
        "_group",
        "_lifetime",
        "_notices",
        "_opened",
        "_options",
        "_output",
        "_parked",
        "_resumer",
        "_sinks",
        "_start",
        "history",
        "hub",
        "positions",
    )

    def __init__(
        self,
        channels: Sequence[str],
        start: Cursor,
        *,
        notices: Sequence[BaseEvent[Any]],
        hub: Hub,
        history: HistoryReader,
        options: StreamOptions,
        lifetime: float | None = None,
    ) -> None:
        self._channels = tuple(channels)
        self._lifetime = lifetime
        """Seconds the stream may stay open (its token's ``exp``); None: no end."""
        self._start = start
        self._notices = notices
        self.hub = hub
        self.history = history
        self._options = options
        self.positions = StreamPositions(channels)
        self._sinks: list[ChannelSink] = []
        self._output: StreamOutput | None = None
        self._group: Group | None = None
        self._ended: str | None = None
        self._opened: Callable[[], None] | None = None
        self._feeds: Sequence[ChannelFeed] = ()
        self._expiry: asyncio.TimerHandle | None = None
        self._resumer: Resumer | None = None
        self._parked = False
        """Whether the task has left while a group writes the stream."""

    @property
    def page_size(self) -> int:
        return self._options.page_size

    def end(self, reason: str) -> None:
        """End the stream at its next step: with a closing hint that says why, unless
        nobody would read it (``QUIET_ENDS``)."""
        if self._ended is None:
            self._ended = reason
        self._leave_group()
        for sink in self._sinks:
            sink.close(reason)

    @property
    def end_reason(self) -> str | None:
        """Why the stream ended (``end``'s reason, or its sinks'), once it has."""
        return self._ended

    def log_fields(self) -> Mapping[str, object]:
        """Its channels, and how it started: live, cursor, earliest or cursor_invalid."""
        start = "cursor_invalid" if self._notices else self._start.kind
        return {"channels": ",".join(self._channels), "start": start}

    def gap(self, gap: Gap) -> None:
        """A feed found that history does not reach back to the position: count and say so."""
        self._options.metrics.history_gaps[gap.reason] += 1
        after = gap.resumed_after
        log.info(
            "history gap",
            extra={
                "channel": gap.channel,
                "reason": gap.reason,
                "requested": gap.requested.decode(),
                "resumed_after": EARLIEST if after is None else after.decode(),
            },
        )

    # -- fan-out group membership ----------------------------------------------

    def idle(self) -> bool:
        """A feed is about to wait on its sink: join the group of the channels if in step.
        True: joined, and the task may leave (a ``resumer`` was given)."""
        output = self._output
        if (
            self._group is None
            and self._ended is None
            and output is not None
            and output.ready
            and all(sink.idle for sink in self._sinks)
        ):
            self._group = self.hub.join(
                self,
                self._channels,
                self.positions.snapshot(),
                output,
                self._sinks,
                self._group_frames,
            )
            return self._group is not None and self._resumer is not None
        return False

    def _group_frames(self) -> Renderer:
        return frames.GroupFrames(self.positions.copy())

    def released(self, positions: Snapshot) -> None:
        """The group hands the stream back: it was written up to ``positions``."""
        self._group = None
        self.positions.restore(positions)
        if self._parked:
            self._parked = False
            assert self._resumer is not None
            self._resumer.resume()  # a task again, which finds what woke it in the sinks

    def _leave_group(self) -> None:
        group = self._group
        if group is not None:
            group.release(self)

    # -- the stream's task -----------------------------------------------------

    async def run(
        self, output: StreamOutput, opened: Callable[[], None], resumer: Resumer | None = None
    ) -> bool:
        """Write the stream's frames to ``output`` until it ends (live chunks may reach
        ``output`` from a group instead); ``opened`` is called once the first are written.

        With a ``resumer`` the task may leave while a group writes the stream: True
        means it parked, and ``resumer.resume()`` is called (from a callback) when a
        task must ``go_on``. False: the stream has ended, its sinks are detached.

        A coroutine, not a generator its response loops over: an open stream keeps one
        frame fewer, and no entry in the event loop's registry of async generators."""
        hub, sinks, positions = self.hub, self._sinks, self.positions
        self._opened = opened
        del opened  # held by the subscription until called: not by this frame for good
        self._resumer = resumer
        if self._lifetime is not None:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(self._lifetime, self.end, TOKEN_EXPIRED)
        parked = False
        try:
            for channel in self._channels:
                sinks.append(await hub.attach(channel))
            if self._ended is not None:
                return False  # the client left while we subscribed
            start = self._start
            feeds = self._feeds = [
                ChannelFeed(self, index, sink, start.position(sink.channel))
                for index, sink in enumerate(sinks)
            ]
            for feed in feeds:
                await feed.open()
            opening = frames.opening(positions, self._options.retry_ms, self._notices)
            if len(feeds) > 1 or not feeds[0].replay_ready:
                if not await self._write(output, opening):
                    return False
                opening = b""
            # else it leaves with the first history, which is at hand: one write, not two.
            self._output = output
            parked = await self._deliver(output, opening, resumed=False)
            return parked
        finally:
            if not parked:
                await self._close()

    async def go_on(self, output: StreamOutput) -> bool:
        """Continue a parked stream in a new task, as ``run`` would have; the same result."""
        parked = False
        try:
            parked = await self._deliver(output, b"", resumed=True)
            return parked
        finally:
            if not parked:
                await self._close()

    async def _deliver(self, output: StreamOutput, opening: bytes, resumed: bool) -> bool:
        """The feeds' items, rendered and written, until the stream ends (False) or parks."""
        options = self._options
        while True:
            try:
                await self._write_items(output, opening, resumed)
                return False  # its client left
            except Parked as parked:
                parked.__traceback__ = None  # as for SinkClosed below: no cycle through it
                # A resumed task starts its feeds afresh: none waits on its sink meanwhile.
                for sink in self._sinks:
                    sink.stop_waiting()
                if self._group is not None and self._ended is None:
                    self._parked = True
                    return True
                opening, resumed = b"", True  # handed back before the task left: go on
            except SinkClosed as closed:
                # Its traceback holds the frames it passed (the merge's tasks among them):
                # nothing reads it, and kept it would leave them all in a reference cycle.
                closed.__traceback__ = None
                if self._ended is None:
                    self._ended = closed.reason
                self._leave_group()
                if closed.reason not in QUIET_ENDS:
                    reason = closed.reason
                    retry = options.shutdown_retry_ms if reason == SHUTDOWN else options.retry_ms
                    positions = self.positions
                    await self._write(output, opening + frames.closing(positions, reason, retry))
                return False

    async def _write_items(self, output: StreamOutput, opening: bytes, resumed: bool) -> None:
        """Render and write what the feeds yield; returns once the client has left."""
        metrics, positions, feeds = self._options.metrics, self.positions, self._feeds
        if len(feeds) == 1:
            # A single feed needs no merge; no context-manager objects either, as
            # this frame stays alive while the stream's task runs.
            items_stream = feeds[0].items(resumed)
            try:
                async for items in items_stream:
                    self._count(metrics, items)
                    for piece in frames.pieces(items):
                        if self._ended is not None:
                            raise SinkClosed(self._ended)  # in the middle of a replay
                        frame = frames.render(positions, 0, piece)
                        if opening:
                            frame, opening = opening + frame, b""
                        if not await self._write(output, frame):
                            return
            finally:
                await items_stream.aclose()
        else:
            index = self._channels.index
            merge = stream.merge(*(feed.items(resumed) for feed in feeds))
            async with merge.stream() as merged:
                async for items in merged:
                    # A feed yields items of its own channel only.
                    self._count(metrics, items)
                    at = index(items[0].channel)
                    for piece in frames.pieces(items):
                        if self._ended is not None:
                            raise SinkClosed(self._ended)
                        frame = frames.render(positions, at, piece)
                        if not await self._write(output, frame):
                            return

    async def _close(self) -> None:
        """The stream has ended: out of its group, its sinks detached."""
        expiry = self._expiry
        if expiry is not None:
            self._expiry = None
            expiry.cancel()
        self._output = None
        self._opened = None
        self._resumer = None
        self._feeds = ()
        self._leave_group()
        hub = self.hub
        for sink in self._sinks:
            await hub.detach(sink)

    async def _write(self, output: StreamOutput, frame: bytes) -> bool:
        """Write ``frame`` from the stream's task; False once its client has left."""
        await output.write(frame)
        self._options.metrics.bytes_written += len(frame)
        opened = self._opened
        if opened is not None:
            self._opened = None
            opened()
        return not output.disconnected

    @staticmethod
    def _count(metrics: Metrics, items: Sequence[Item]) -> None:
        """Count the items the stream's own task writes (a group counts its own)."""
        metrics.deliveries += len(items)
        channels = metrics.channels
        if channels is not None:
            channels.deliveries[channels.label(items[0].channel)] += len(items)
