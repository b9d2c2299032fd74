"""The hub: the live flow of every subscribed channel, fanned out to this process's streams.

Channels are reference-counted: the first local stream of a channel subscribes
it through the broker, the last one to leave unsubscribes it. Live entries
(the broker decodes them once into shared ``Entry`` objects) are gathered per
channel until the next flush, at most one per ``flush_interval``, and each
channel's batch then goes to its groups (streams in step, written by the
flush) and to the sinks of its other streams (which their own tasks drain).

The hub is the broker's listener: when the live flow of channels is back after
an interruption, their groups are dissolved and every stream on them reads
history after its position.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from gateway.broker import Broker, Entry
from gateway.fanout.group import Channels, Group, Member, Renderer, Snapshot
from gateway.fanout.sink import ChannelSink
from gateway.fanout.topic import Topic
from gateway.metrics import Buckets, Metrics
from gateway.sse import StreamOutput

FULL_BATCH_BYTES = 256 * 1024
"""Payload bytes after which a channel's batch is flushed without waiting out the interval:
large events need no help to make large writes, and waiting would only hold memory."""


LiveMark = tuple[Topic, int, int]
"""A channel's subscription, the hub's epoch and the entries received on it (``Hub.live_mark``)."""


@dataclass
class HubStats:
    channels: int
    streams: int
    """Sinks attached: one per stream and channel."""
    grouped: int
    """Sinks of streams in a group (written by the flush without their own task)."""
    groups: int


class Hub:
    """Every subscribed channel of the process, and each flush's delivery to its streams."""

    def __init__(
        self,
        broker: Broker,
        *,
        max_buffer_events: int,
        max_buffer_bytes: int,
        flush_interval: float = 0.0,
        metrics: Metrics,
    ) -> None:
        self._broker = broker
        self._metrics = metrics
        self._max_events = max_buffer_events
        self._max_bytes = max_buffer_bytes
        self._flush_interval = flush_interval
        self._topics: dict[str, Topic] = {}
        self._groups: dict[Channels, Group] = {}
        self._dirty: list[Topic] = []
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = -math.inf
        self._flush_waits = False
        """Whether the scheduled flush waits out the interval (a full batch cuts it short)."""
        self._closed_reason: str | None = None
        self._pending_entries = 0
        """Entries received since the last flush (how many ages the next one may sample)."""
        self.epoch = 0
        """Counts interruptions: positions learned before one are not trusted after it."""

    def close(self) -> None:
        """Stop flushing (the process is ending)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None

    def close_all(self, reason: str) -> None:
        """End every local stream (their clients reconnect elsewhere) and refuse new ones."""
        self._closed_reason = reason
        for topic in self._topics.values():
            for group in list(topic.groups):
                group.dissolve()
            for sink in list(topic.sinks):
                sink.close(reason)

    # -- streams come and go -------------------------------------------------

    async def attach(self, channel: str) -> ChannelSink:
        """A sink for a stream on ``channel``; the caller must ``detach`` it in a ``finally``.

        A pair of calls rather than a context manager: a context manager object per
        channel and stream is memory thousands of idle streams need not carry."""
        sink = ChannelSink(channel, max_events=self._max_events, max_bytes=self._max_bytes)
        if self._closed_reason is not None:
            sink.close(self._closed_reason)
        topic = self._topics.get(channel)
        if topic is None:
            topic = self._topics[channel] = Topic(channel)
            topic.subscribers = 1
            topic.sinks.add(sink)
            try:
                await self._broker.subscribe(channel)
            except BaseException:
                await self.detach(sink)
                raise
            return sink
        topic.subscribers += 1
        topic.sinks.add(sink)
        return sink

    async def detach(self, sink: ChannelSink) -> None:
        """Remove a stream's sink (out of any group first); the last one unsubscribes."""
        topic = self._topics.get(sink.channel)
        if topic is None or sink not in topic.sinks:
            return
        topic.sinks.discard(sink)
        topic.subscribers -= 1
        if not topic.subscribers:
            del self._topics[sink.channel]
            await self._broker.unsubscribe(sink.channel)

    async def wait_subscribed(self, channel: str) -> None:
        """Return once Redis confirmed the subscription: nothing published after is missed."""
        await self._topics[channel].acked.wait()

    def live_position(self, channel: str) -> bytes | None:
        """The newest id of a subscribed channel, if the live flow has seen or learned it.

        Every entry published after it reaches this process's sinks, so a stream that
        starts live may start from here without reading history."""
        topic = self._topics.get(channel)
        if topic is None or not topic.acked.is_set():
            return None
        return topic.last_id

    def live_mark(self, channel: str) -> LiveMark | None:
        """What the live flow of a subscribed channel has reached: equal marks taken at two
        moments mean no entry of the channel arrived in between, over one subscription.

        A history page read after the first moment that ends at the channel's tip is then
        complete for every stream attached by the second: whatever was published after
        the read has yet to arrive, and will reach its sink. None while the subscription
        is not confirmed (nothing can be vouched for)."""
        topic = self._topics.get(channel)
        if topic is None or not topic.acked.is_set():
            return None
        return (topic, self.epoch, topic.received)

    def learn_position(self, channel: str, tip: bytes, since: int) -> None:
        """Remember a channel's tip read from Redis after the subscription was confirmed
        (``since``: the epoch before waiting for it); an entry received meanwhile wins."""
        topic = self._topics.get(channel)
        if topic is not None and topic.last_id is None and since == self.epoch:
            topic.last_id = topic.flushed_id = tip

    # -- groups ----------------------------------------------------------------

    def join(
        self,
        member: Member,
        channels: Channels,
        positions: Snapshot,
        output: StreamOutput,
        sinks: Sequence[ChannelSink],
        renderer: Callable[[], Renderer],
    ) -> Group | None:
        """Put a stream whose task is idle into the group of its channels, if it is in step:
        at the flushed id of every channel. None (nothing changes) otherwise."""
        topics = []
        for channel, position in zip(channels, positions, strict=True):
            topic = self._topics.get(channel)
            if topic is None or position is None or topic.flushed_id != position:
                return None
            topics.append(topic)
        group = self._groups.get(channels)
        if group is None:
            group = Group(channels, topics, renderer(), self._groups, self._metrics)
        elif not group.at(positions):
            return None
        group.add(member, output, sinks)
        return group

    # -- the broker's listener ---------------------------------------------------

    def live_entry(self, entry: Entry) -> None:
        topic = self._topics.get(entry.channel)
        if topic is None:
            return  # arrived after the last local stream left
        topic.last_id = entry.id
        topic.received += 1
        if not topic.pending:
            self._dirty.append(topic)
        topic.pending.append(entry)
        topic.pending_bytes += len(entry.data)
        self._pending_entries += 1
        self._schedule_flush(topic.pending_bytes >= FULL_BATCH_BYTES)

    def subscribed(self, channel: str) -> None:
        topic = self._topics.get(channel)
        if topic is not None:
            topic.acked.set()

    def interrupted(self, channels: Collection[str]) -> None:
        self.epoch += 1
        for channel in channels:
            topic = self._topics.get(channel)
            if topic is not None:
                topic.forget_positions()

    def resumed(self, channels: Collection[str]) -> None:
        for channel in channels:
            topic = self._topics.get(channel)
            if topic is None:
                continue
            for group in list(topic.groups):
                group.dissolve()
            for sink in topic.sinks:
                sink.request_resync()

    # -- flushing ----------------------------------------------------------------

    def _schedule_flush(self, full: bool = False) -> None:
        """Flush on the next loop turn, but at most once per ``flush_interval``: a quiet
        channel's entry leaves at once, a busy one's entries leave together. A ``full``
        batch leaves on the next turn regardless."""
        handle = self._flush_handle
        if handle is not None:
            if not (full and self._flush_waits):
                return
            handle.cancel()
        loop = asyncio.get_running_loop()
        due = self._last_flush + self._flush_interval
        self._flush_waits = due > loop.time() and not full
        if self._flush_waits:
            self._flush_handle = loop.call_at(due, self._flush)
        else:
            self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        metrics = self._metrics
        flush_time, latency, channels = (
            metrics.flush_time,
            metrics.publish_latency,
            metrics.channels,
        )
        began = time.perf_counter() if flush_time is not None else 0.0
        dirty, self._dirty = self._dirty, []
        ages = _Ages(latency, self._pending_entries) if latency is not None else None
        self._pending_entries = 0
        touched: list[Group] = []
        for topic in dirty:
            batch = topic.take_batch()
            if ages is not None:
                ages.take(batch.entries)
            if channels is not None:
                channels.events[channels.label(batch.channel)] += len(batch.entries)
            for group in topic.groups:
                if group.take(batch):
                    touched.append(group)
            for sink in topic.sinks:
                sink.push(batch)
        for group in touched:
            group.flush()
        if flush_time is not None:
            flush_time.observe(time.perf_counter() - began)

    # -- introspection -----------------------------------------------------------

    def stats(self) -> HubStats:
        topics = self._topics.values()
        return HubStats(
            channels=len(self._topics),
            streams=sum(topic.subscribers for topic in topics),
            grouped=sum(topic.subscribers - len(topic.sinks) for topic in topics),
            groups=len(self._groups),
        )

    def channel_names(self) -> list[str]:
        return sorted(self._topics)

    def streams_per_channel(self) -> dict[str, int]:
        return {channel: topic.subscribers for channel, topic in self._topics.items()}


AGES_PER_FLUSH = 64
"""Most entry ages a flush observes for the latency histogram: one entry in every
``entries // 64 + 1``, evenly spread, so that a flush of thousands of one-entry batches
(many channels with a stream or two each) costs a comparison per batch, not a timing."""


class _Ages:
    """Observes the age of every ``stride``-th entry of one flush: now minus its id's time."""

    __slots__ = ("_latency", "_now_ms", "_skip", "_stride")

    def __init__(self, latency: Buckets, entries: int) -> None:
        self._latency = latency
        self._now_ms = time.time() * 1000.0
        self._stride = entries // AGES_PER_FLUSH + 1
        self._skip = self._stride // 2
        """Entries to pass over before the next one observed."""

    def take(self, entries: Sequence[Entry]) -> None:
        count, skip = len(entries), self._skip
        if skip >= count:
            self._skip = skip - count
            return
        now_ms, observe, stride = self._now_ms, self._latency.observe, self._stride
        for entry in entries[skip::stride]:
            age = now_ms - entry.key[0]
            observe(age * 0.001 if age > 0 else 0.0)  # two hosts' clocks may disagree a little
        self._skip = (skip - count) % stride
