"""One channel for one client: replay history after the cursor, then go live.

The algorithm (DESIGN.md, "Ids and resume"): the hub subscription is made and
confirmed first, so every entry published from then on lands in the sink;
history is read after the client's position in pages; then the buffered live
entries follow, skipping those history already delivered.

Every entry records its predecessor's id, which makes the hand-over exact: a
live entry whose predecessor is not the client's position means something in
between was missed (a reconnect, a dropped message), so the feed reads history
again before going on. When history does not reach back to the position, a
``Gap`` is emitted: ``trimmed`` when retention dropped entries after it,
``lost`` when the history was reset under it (Redis restarted empty).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass

from gateway.broker.entry import Entry
from gateway.broker.history import HistoryReader
from gateway.fanout.hub import Hub
from gateway.fanout.sink import ChannelSink
from gateway.resume.cursor import EARLIEST, LIVE, Position, StreamKey, format_stream_id, stream_key

BEFORE_ALL: StreamKey = (-1, -1)


@dataclass(frozen=True, slots=True)
class Gap:
    """History no longer holds what lies between ``requested`` and ``resumed_after``."""

    channel: str
    reason: str
    requested: bytes
    resumed_after: bytes


Item = Entry | Gap


class ChannelFeed:
    """The position of one client in one channel, and the items that advance it."""

    __slots__ = (
        "_history",
        "_hub",
        "_key",
        "_page_size",
        "_sink",
        "_start",
        "channel",
        "position",
    )

    def __init__(
        self,
        channel: str,
        start: Position,
        *,
        sink: ChannelSink,
        hub: Hub,
        history: HistoryReader,
        page_size: int,
    ) -> None:
        self.channel = channel
        self._start = start
        self._sink = sink
        self._hub = hub
        self._history = history
        self._page_size = page_size
        self.position: bytes | None = None
        """Id of the last entry given to the client; None: before the earliest retained."""
        self._key: StreamKey = BEFORE_ALL

    async def open(self) -> None:
        """Wait until the live subscription is confirmed, then fix the starting position."""
        since = self._hub.epoch
        await self._hub.wait_subscribed(self.channel)
        if self._start == LIVE:
            # The hub knows the newest id of a channel it follows: no Redis read per stream.
            tip = self._hub.live_position(self.channel)
            if tip is None:
                tip = await self._history.tip(self.channel)
                self._hub.learn_position(self.channel, tip, since)
            self._jump(tip)
        elif self._start != EARLIEST:
            assert isinstance(self._start, tuple)
            self._jump(format_stream_id(self._start))

    def cursor_value(self) -> bytes:
        return self.position if self.position is not None else EARLIEST.encode()

    async def items(self) -> AsyncGenerator[list[Item], None]:
        """History after the position, then live entries, forever (until cancelled)."""
        if self._start != LIVE:
            # A live start's position was taken after the subscription was confirmed:
            # everything after it reaches the sink, so there is no history to read.
            async for items in self._catch_up():
                yield items
        sink = self._sink
        while True:
            while not sink.ready():
                await sink.wait()
            batches, resync = sink.take()
            if resync:
                await self._hub.wait_subscribed(self.channel)
                async for items in self._catch_up():
                    yield items
            out: list[Item] = []
            for batch in batches:
                for entry in batch:
                    if entry.key <= self._key:
                        continue  # history already delivered it
                    if entry.prev != self.position:
                        if out:
                            yield out
                            out = []
                        async for items in self._catch_up():
                            yield items
                        if entry.key <= self._key:
                            continue
                        # History could not link up to this entry; say so, then go on.
                        out.append(self._gap("lost", entry.prev))
                    out.append(entry)
                    self.position, self._key = entry.id, entry.key
            if out:
                yield out

    def advance(self, entry: Entry) -> None:
        """The client was given everything up to ``entry`` (which links up with the position)."""
        self.position, self._key = entry.id, entry.key

    def move_to(self, entry_id: bytes) -> None:
        """The client was given everything up to ``entry_id`` by other means (a lockstep)."""
        self._jump(entry_id)

    def accept_live(self, batch: Sequence[Entry]) -> list[Entry] | None:
        """The entries of a live batch that are new to the client, advancing the position;
        None (and no change) when the batch does not link up and history must be read."""
        position, key = self.position, self._key
        accepted = []
        for entry in batch:
            if entry.key <= key:
                continue  # history already delivered it
            if entry.prev != position:
                return None
            accepted.append(entry)
            position, key = entry.id, entry.key
        self.position, self._key = position, key
        return accepted

    async def _catch_up(self) -> AsyncIterator[list[Item]]:
        """Read history after the position until it is exhausted."""
        while True:
            page = await self._history.read_after(self.channel, self.position, self._page_size)
            entries = page.entries
            items: list[Item] = []
            if self.position is not None:
                reached = entries[0].prev if entries else page.tip
                if reached != self.position:
                    if stream_key(reached) < self._key:
                        # History is behind the client: it was reset. Start over from its start.
                        yield [self._gap("lost", EARLIEST.encode())]
                        continue
                    items.append(self._gap("trimmed", reached))
            for entry in entries:
                if self.position is not None and entry.prev != self.position:
                    items.append(self._gap("trimmed", entry.prev))  # a hole inside history
                items.append(entry)
                self.position, self._key = entry.id, entry.key
            if not entries and self.position is None:
                self._jump(page.tip)
            if items:
                yield items
            if len(entries) < self._page_size:
                return

    def _gap(self, reason: str, resumed_after: bytes) -> Gap:
        gap = Gap(self.channel, reason, self.cursor_value(), resumed_after)
        if resumed_after == EARLIEST.encode():
            self.position, self._key = None, BEFORE_ALL
        else:
            self._jump(resumed_after)
        return gap

    def _jump(self, entry_id: bytes) -> None:
        self.position, self._key = entry_id, stream_key(entry_id)
