"""One channel of one stream: replay history after the stream's position, then go live.

The algorithm (DESIGN.md, "Ids and resume"): the hub subscription is made and
confirmed first, so every entry published from then on lands in the sink;
history is read after the stream's position in pages; then the buffered live
entries follow, skipping those history already delivered.

Every entry records its predecessor's id, which makes the hand-over exact: a
live entry whose predecessor is not the stream's position means something in
between was missed (a reconnect, a dropped message), so the feed reads history
again before going on. When history does not reach back to the position, a
``Gap`` is emitted: ``trimmed`` when retention dropped entries after it,
``lost`` when the history was reset under it (Redis restarted empty).

The feed owns no position of its own: it reads the stream's ``StreamPositions``
whenever it resumes. That is always up to date, because the stream's frames
loop renders every item the feed yields before it asks the feed for more, and
a fan-out group that wrote the stream meanwhile handed its positions back
before waking the feed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.broker import (
    Entry,
    HistoryReader,
    HistoryRefused,
    Page,
    format_stream_id,
    stream_key,
)
from gateway.fanout import ChannelSink, Hub
from gateway.resume.cursor import EARLIEST, LIVE, Position, StreamPositions

_EARLIEST = EARLIEST.encode()


@dataclass(frozen=True, slots=True)
class Gap:
    """History no longer holds what lies between ``requested`` and ``resumed_after``."""

    channel: str
    reason: str
    requested: bytes
    """The position the stream asked to continue after (an id, or ``earliest``)."""
    resumed_after: bytes | None
    """The position it continues after; None: before the earliest retained entry."""


Item = Entry | Gap


class Parked(Exception):
    """The stream joined a fan-out group and may leave its task: the group writes it
    until it hands the stream back (``Stream.idle``)."""


class Stream(Protocol):
    """What a feed uses of its stream (``Subscription``)."""

    @property
    def hub(self) -> Hub: ...

    @property
    def history(self) -> HistoryReader: ...

    @property
    def positions(self) -> StreamPositions:
        """The stream's positions: where the feed goes on from whenever it resumes."""
        ...

    @property
    def page_size(self) -> int: ...

    def idle(self) -> bool:
        """A feed is about to wait on its sink: the stream may join a fan-out group.
        True: it joined, and its task need not wait (the feed raises ``Parked``)."""
        ...

    def gap(self, gap: Gap) -> None:
        """The feed is about to hand out ``gap`` (counted and logged)."""
        ...


class ChannelFeed:
    """The items of one channel for one stream, from its position on."""

    __slots__ = ("_first", "_index", "_sink", "_start", "_stream", "channel")

    def __init__(self, stream: Stream, index: int, sink: ChannelSink, start: Position) -> None:
        self._stream = stream
        self._index = index
        self._sink = sink
        self._start = start
        self._first: Page | None = None
        """The first history page, when it was at hand as the feed opened."""
        self.channel = sink.channel

    async def open(self) -> None:
        """Wait until the live subscription is confirmed, then fix the starting position."""
        stream, channel = self._stream, self.channel
        hub = stream.hub
        since = hub.epoch
        await hub.wait_subscribed(channel)
        if self._start == LIVE:
            # The hub knows the newest id of a channel it follows: no Redis read per stream.
            tip = hub.live_position(channel)
            if tip is None:
                tip = await stream.history.tip(channel)
                hub.learn_position(channel, tip, since)
            stream.positions.move(self._index, tip)
            return
        if self._start != EARLIEST:
            assert isinstance(self._start, tuple)
            stream.positions.move(self._index, format_stream_id(self._start))
        # Streams resuming alike find their first page in the history cache.
        position = stream.positions.ids[self._index]
        self._first = stream.history.kept(
            channel, position, stream.page_size, hub.live_mark(channel)
        )

    @property
    def replay_ready(self) -> bool:
        """Whether ``items`` yields history before it waits for anything."""
        first = self._first
        return first is not None and bool(first.entries)

    async def items(self, resumed: bool = False) -> AsyncGenerator[Sequence[Item], None]:
        """History after the position, then live entries, forever (until cancelled, or
        ``Parked``); ``resumed``: the feed has caught up before, live entries only."""
        stream, index, sink = self._stream, self._index, self._sink
        positions = stream.positions
        if not resumed and self._start != LIVE:
            # A live start's position was taken after the subscription was confirmed:
            # everything after it reaches the sink, so there is no history to read.
            async for items in self._catch_up():
                yield items
        while True:
            while not sink.ready():
                waiter = sink.wait()
                if stream.idle():  # in a fan-out group: it writes the stream from now on
                    raise Parked
                await waiter
            batches, resync = sink.take()
            if resync:
                await stream.hub.wait_subscribed(self.channel)
                async for items in self._catch_up():
                    yield items
            position, key = positions.ids[index], positions.keys[index]
            out: list[Item] = []
            for batch in batches:
                for entry in batch:
                    if entry.key <= key:
                        continue  # history already delivered it
                    if entry.prev != position:
                        if out:
                            yield out
                            out = []
                        async for items in self._catch_up():
                            yield items
                        position, key = positions.ids[index], positions.keys[index]
                        if entry.key <= key:
                            continue
                        # History could not link up to this entry; say so, then go on.
                        out.append(self._gap("lost", _text(position), entry.prev))
                    out.append(entry)
                    position, key = entry.id, entry.key
            if out:
                yield out

    async def _catch_up(self) -> AsyncIterator[Sequence[Item]]:
        """Read history after the position until it is exhausted."""
        stream, index, channel = self._stream, self._index, self.channel
        positions, history, page_size = stream.positions, stream.history, stream.page_size
        hub = stream.hub
        while True:
            position, key = positions.ids[index], positions.keys[index]
            try:
                page = self._first
                if page is not None:
                    self._first = None  # read at this position, as the feed opened
                else:
                    # The live mark lets streams resuming alike share a page at the tip.
                    mark = hub.live_mark(channel)
                    page = await history.read_after(channel, position, page_size, mark)
            except HistoryRefused:
                if position is None:
                    raise  # not the position: the history itself cannot be read
                # A position the client chose that Redis will not read after: say so and
                # replay what is retained, as for a history lost under the position.
                yield [Gap(channel, "lost", position, None)]
                continue
            entries = page.entries
            items: list[Item] = []
            if position is not None:
                reached = entries[0].prev if entries else page.tip
                if reached != position:
                    if stream_key(reached) < key:
                        # History is behind the stream: it was reset. Start over from its start.
                        yield [self._gap("lost", position, None)]
                        continue
                    items.append(self._gap("trimmed", position, reached))
                    position = reached
            if page.linked and (position is None or entries[0].prev == position):
                # The common case: every stream resuming here takes the same entries,
                # shared rather than copied (their frames are joined once, too).
                if items:
                    items.extend(entries)
                    yield items
                else:
                    yield entries
            else:
                for entry in entries:
                    if position is not None and entry.prev != position:
                        items.append(self._gap("trimmed", position, entry.prev))  # a hole
                    items.append(entry)
                    position = entry.id
                if items:
                    yield items
            if len(entries) < page_size:
                return

    def _gap(self, reason: str, requested: bytes, resumed_after: bytes | None) -> Gap:
        gap = Gap(self.channel, reason, requested, resumed_after)
        self._stream.gap(gap)
        return gap


def _text(position: bytes | None) -> bytes:
    return _EARLIEST if position is None else position
