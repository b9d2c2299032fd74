"""A client's subscription: its channel feeds merged into one stream of SSE bytes.

Per channel a ``ChannelFeed`` (replay, then live); several feeds are merged
with ``aiostream.stream.merge``. A single feed needs no merging and is
iterated directly, which saves the merge's task per channel on the most
common subscription.

Live batches take a shorter way while the client keeps up: when its stream
waits with nothing buffered, the hub's flush hands a batch to ``LiveWriter``,
which checks that it links up with the client's position, renders it and
writes it at once (``StreamOutput.write_now``); a client on one channel gets
the bytes the batch built once for all such clients, and once it is in step it
is seated in the channel's fan-out, which writes it with no per-client
bookkeeping at all (``gateway.fanout``). Everything else (the opening,
history, gaps, a client that lags, the closing hint) goes through the feeds
and the stream's own task, exactly as before.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiostream import stream

from contract.events import BaseEvent
from gateway._fastpath.transport import ChunkedTransport
from gateway.broker.entry import Entry, LiveBatch
from gateway.broker.history import HistoryReader
from gateway.fanout.hub import Hub
from gateway.fanout.lockstep import Lockstep
from gateway.fanout.sink import ChannelSink, SinkClosed
from gateway.resume.cursor import Cursor
from gateway.resume.feed import ChannelFeed
from gateway.resume.frames import FrameWriter
from gateway.sse.output import HeldWrites, StreamOutput

log = logging.getLogger(__name__)

QUIET_ENDS = frozenset({"disconnect", "write_failed"})
"""Reasons to end a stream that nobody can be told about."""


@dataclass(frozen=True)
class StreamOptions:
    retry_ms: int
    shutdown_retry_ms: int
    page_size: int


class LiveWriter:
    """Writes live batches straight to a client that keeps up (``ChannelSink.deliver``).

    Returns False (and changes nothing) when the feed's task must handle the batch:
    a write is still in flight, or the batch does not link up with the position."""

    __slots__ = ("_held", "_output", "_writer")

    def __init__(
        self, writer: FrameWriter, output: StreamOutput, held: HeldWrites | None = None
    ) -> None:
        self._writer = writer
        self._output = output
        self._held = held
        """Where a client on several channels leaves its chunks until the flush is over."""

    def deliver(self, feed: ChannelFeed, batch: LiveBatch) -> bool:
        """Any subscription: the batch's entries are rendered with this client's cursor."""
        output = self._output
        if not output.ready:
            return False
        entries = feed.accept_live(batch.entries)
        if entries is None:
            return False
        if len(entries) == len(batch.entries):
            chunk = self._writer.render_shared(entries, batch.rendered)
        elif entries:
            chunk = self._writer.render(entries)
        else:
            return True
        if self._held is None:
            output.write_now(chunk)
        else:
            self._held.hold(output, chunk)
        return True


class SoloLiveWriter(LiveWriter):
    """A subscription to one channel: the common case gets the batch's shared bytes."""

    __slots__ = ("_feed",)

    def __init__(self, feed: ChannelFeed, writer: FrameWriter, output: StreamOutput) -> None:
        super().__init__(writer, output)
        self._feed = feed

    def deliver_solo(self, batch: LiveBatch) -> bool:
        feed, output = self._feed, self._output
        if feed.position != batch.first_prev:
            return self.deliver(feed, batch)  # history already has part of it, or a gap
        if not output.ready:
            return False
        last = batch.last
        feed.advance(last)
        self._writer.advance_solo(last.id)
        output.write_now(batch.solo_chunk())
        return True


class DirectWrites:
    """``write_framed`` for the fan-out's loops: a seat's or lockstep member's write."""

    __slots__ = ()
    _direct: ChunkedTransport
    _output: StreamOutput

    def write_framed(self, framed: bytes) -> bool:
        if self._direct.write_framed(framed):
            self._output.wrote = True
            return True
        return False


class SeatedLiveWriter(DirectWrites, SoloLiveWriter):
    """A one-channel client under uvicorn: its ``Seat`` in the channel's fan-out."""

    __slots__ = ("_direct",)

    def __init__(
        self, feed: ChannelFeed, writer: FrameWriter, output: StreamOutput, direct: ChunkedTransport
    ) -> None:
        super().__init__(feed, writer, output)
        self._direct = direct

    def in_step(self, last: Entry) -> bool:
        return self._feed.position == last.id and self._output.ready and self._direct.writable

    def sync(self, last: Entry) -> None:
        self._feed.advance(last)
        self._writer.advance_solo(last.id)


class LockstepLiveWriter(DirectWrites, LiveWriter):
    """A client on several channels under uvicorn: a ``lockstep.Member`` once in step."""

    __slots__ = ("_candidate", "_direct", "_feeds", "_hub", "sinks")

    def __init__(
        self,
        feeds: Sequence[ChannelFeed],
        sinks: Sequence[ChannelSink],
        writer: FrameWriter,
        output: StreamOutput,
        direct: ChunkedTransport,
        hub: Hub,
    ) -> None:
        super().__init__(writer, output, hub.held_writes)
        self._feeds = feeds
        self.sinks = sinks
        self._direct = direct
        self._hub = hub
        self._candidate = False

    def deliver(self, feed: ChannelFeed, batch: LiveBatch) -> bool:
        delivered = super().deliver(feed, batch)
        if delivered and not self._candidate:
            self._candidate = True
            self._hub.lockstep_candidates.append(self.try_join)
        return delivered

    def try_join(self) -> None:
        """After a flush: join the lockstep of these channels if in step with all of them."""
        self._candidate = False
        output = self._output
        if not (output.ready and output.held is None and self._direct.writable):
            return
        positions: dict[str, bytes] = {}
        hub = self._hub
        for feed, sink in zip(self._feeds, self.sinks, strict=True):
            fanout = sink.fanout
            if fanout is None or not sink.idle or fanout.in_lockstep(sink):
                return
            # Nothing is pending after a flush: the channel's newest id is what was sent.
            if feed.position is None or feed.position != hub.live_position(feed.channel):
                return
            positions[feed.channel] = feed.position
        channels = tuple(positions)
        lockstep = hub.locksteps.get(channels)
        if lockstep is None:
            lockstep = Lockstep(channels, positions, hub.locksteps)
        elif lockstep.positions != positions:
            return
        lockstep.join(self)

    def sync(self, positions: Mapping[str, bytes]) -> None:
        for feed in self._feeds:
            position = positions[feed.channel]
            feed.move_to(position)
            self._writer.move_to(feed.channel, position)


class Subscription:
    """One SSE stream's channels, from the opening cursor to the end of the connection."""

    __slots__ = (
        "_channels",
        "_cursor",
        "_ended",
        "_history",
        "_hub",
        "_notices",
        "_options",
        "_sinks",
    )

    def __init__(
        self,
        channels: Sequence[str],
        cursor: Cursor,
        *,
        notices: Sequence[BaseEvent[Any]],
        hub: Hub,
        history: HistoryReader,
        options: StreamOptions,
    ) -> None:
        self._channels = channels
        self._cursor = cursor
        self._notices = notices
        self._hub = hub
        self._history = history
        self._options = options
        self._sinks: list[ChannelSink] = []
        self._ended: str | None = None

    def end(self, reason: str) -> None:
        """End the stream at its next step, without a closing hint (nobody would read it)."""
        if self._ended is None:
            self._ended = reason
        for sink in self._sinks:
            sink.close(reason)

    async def frames(self, output: StreamOutput) -> AsyncGenerator[bytes, None]:
        """The bytes the stream's task writes; live batches may go to ``output`` directly."""
        hub, options, sinks = self._hub, self._options, self._sinks
        try:
            for channel in self._channels:
                sinks.append(await hub.attach(channel))
            if self._ended is not None:
                return  # the client left while we subscribed
            feeds = [
                ChannelFeed(
                    sink.channel,
                    self._cursor.position(sink.channel),
                    sink=sink,
                    hub=hub,
                    history=self._history,
                    page_size=options.page_size,
                )
                for sink in sinks
            ]
            for feed in feeds:
                await feed.open()
            writer = FrameWriter(self._channels, [feed.cursor_value() for feed in feeds])
            yield writer.opening(options.retry_ms, self._notices)
            if len(feeds) == 1:
                direct = output.direct
                if direct is None:
                    sinks[0].deliver = SoloLiveWriter(feeds[0], writer, output).deliver_solo
                else:
                    seated = SeatedLiveWriter(feeds[0], writer, output, direct)
                    sinks[0].deliver, sinks[0].seat = seated.deliver_solo, seated
            else:
                direct = output.direct
                live = (
                    LiveWriter(writer, output, hub.held_writes)
                    if direct is None
                    else LockstepLiveWriter(feeds, sinks, writer, output, direct, hub)
                )
                for feed, sink in zip(feeds, sinks, strict=True):
                    sink.deliver = functools.partial(live.deliver, feed)
            try:
                if len(feeds) == 1:
                    # A single feed needs no merge; no context-manager objects either, as
                    # this frame stays alive for the whole stream.
                    items_stream = feeds[0].items()
                    try:
                        async for items in items_stream:
                            yield writer.render(items)
                    finally:
                        await items_stream.aclose()
                else:
                    async with stream.merge(*(feed.items() for feed in feeds)).stream() as merged:
                        async for items in merged:
                            yield writer.render(items)
            except SinkClosed as closed:
                if closed.reason in QUIET_ENDS:
                    return
                retry = (
                    options.shutdown_retry_ms if closed.reason == "shutdown" else options.retry_ms
                )
                log.info("closing stream on %s (%s)", ",".join(self._channels), closed.reason)
                yield writer.closing(closed.reason, retry)
        finally:
            for sink in sinks:
                await hub.detach(sink)
