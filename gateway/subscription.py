"""A client's subscription: its channel feeds merged into one stream of SSE bytes.

Per channel a ``ChannelFeed`` (replay, then live); several feeds are merged
with ``aiostream.stream.merge``. A single feed needs no merging and is
iterated directly, which saves the merge's task per channel on the most
common subscription.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiostream import stream

from contract.events import BaseEvent
from gateway.channel_stream import ChannelFeed, Item
from gateway.cursor import Cursor
from gateway.frames import FrameWriter
from gateway.history import HistoryReader
from gateway.hub import Hub
from gateway.sink import SinkClosed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamOptions:
    retry_ms: int
    shutdown_retry_ms: int
    page_size: int


class StreamCounter:
    """Open streams of this process (for limits and /stats)."""

    def __init__(self) -> None:
        self.open = 0
        self.total = 0


async def subscription_frames(
    channels: Sequence[str],
    cursor: Cursor,
    *,
    notices: Sequence[BaseEvent[Any]],
    hub: Hub,
    history: HistoryReader,
    options: StreamOptions,
    counter: StreamCounter,
) -> AsyncIterator[bytes]:
    """The bytes of one SSE stream, from the opening cursor to the end of the connection."""
    counter.open += 1
    counter.total += 1
    try:
        async with contextlib.AsyncExitStack() as stack:
            feeds = []
            for channel in channels:
                sink = await stack.enter_async_context(hub.subscribe(channel))
                feeds.append(
                    ChannelFeed(
                        channel,
                        cursor.position(channel),
                        sink=sink,
                        hub=hub,
                        history=history,
                        page_size=options.page_size,
                    )
                )
            for feed in feeds:
                await feed.open()
            writer = FrameWriter(channels, [feed.cursor_value() for feed in feeds])
            yield writer.opening(options.retry_ms, notices)
            try:
                async with _merged(feeds) as items_stream:
                    async for items in items_stream:
                        yield writer.render(items)
            except SinkClosed as closed:
                retry = (
                    options.shutdown_retry_ms if closed.reason == "shutdown" else options.retry_ms
                )
                log.info("closing stream on %s (%s)", ",".join(channels), closed.reason)
                yield writer.closing(closed.reason, retry)
    finally:
        counter.open -= 1


@contextlib.asynccontextmanager
async def _merged(feeds: Sequence[ChannelFeed]) -> AsyncIterator[AsyncIterator[list[Item]]]:
    if len(feeds) == 1:
        single = feeds[0].items()
        async with contextlib.aclosing(single):
            yield single
    else:
        merged = stream.merge(*(feed.items() for feed in feeds))
        async with merged.stream() as streamer:
            yield streamer
