"""The hub: one Redis pub/sub connection per process, fanned out in memory.

Channels are reference-counted: the first local client of a channel
subscribes it on Redis, the last one to leave unsubscribes it. Live messages
are parsed once into shared ``Entry`` objects, gathered per channel until the
next flush (the next loop turn, at most one per ``flush_interval_ms``), and
handed as one batch to the channel's ``ChannelFanout``, which writes it to
every client. When the connection drops, the hub reconnects with backoff and
jitter, re-subscribes and asks every sink to resync from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from contract.backoff import Backoff
from contract.wire import Keyspace, decode_live
from gateway.broker._pubsub import PubSubConnection
from gateway.broker.entry import Entry, LiveBatch
from gateway.fanout.channel import ChannelFanout
from gateway.fanout.sink import ChannelSink
from gateway.sse.output import HeldWrites

if TYPE_CHECKING:
    from gateway.fanout.lockstep import Lockstep

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 5.0
"""Seconds of silence after which the hub PINGs; two silent intervals mean dead."""

FULL_BATCH_BYTES = 256 * 1024
"""Payload bytes after which a channel's batch is flushed without waiting out the interval:
large events need no help to make large writes, and waiting would only hold memory."""

CONNECTION_ERRORS = (RedisError, OSError, asyncio.TimeoutError, ValueError)


class Topic:
    """One subscribed channel: its local clients and the entries waiting for the next flush."""

    __slots__ = ("acked", "channel", "fanout", "last_id", "live_name", "pending", "pending_bytes")

    def __init__(self, channel: str, live_name: str) -> None:
        self.channel = channel
        self.live_name = live_name
        self.fanout = ChannelFanout()
        self.pending: list[Entry] = []
        self.pending_bytes = 0
        self.acked = asyncio.Event()
        self.last_id: bytes | None = None
        """Newest entry id seen on this connection; None until known."""


@dataclass
class HubStats:
    connected: bool
    channels: int
    sinks: int
    seated: int
    """Sinks written by the fan-out's tight loop (clients on one channel that keep up)."""
    reconnects: int
    messages: int


class Hub:
    """Owns the pub/sub connection, its reader task and every channel subscription."""

    def __init__(
        self,
        redis_url: str,
        keyspace: Keyspace,
        *,
        max_buffer_events: int,
        max_buffer_bytes: int,
        flush_interval: float = 0.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
    ) -> None:
        self._redis_url = redis_url
        self._keyspace = keyspace
        self._max_events = max_buffer_events
        self._max_bytes = max_buffer_bytes
        self._flush_interval = flush_interval
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._topics: dict[str, Topic] = {}
        self._by_live: dict[bytes, Topic] = {}
        self._outstanding: dict[bytes, int] = {}
        self._dirty: list[Topic] = []
        self.held_writes = HeldWrites()
        """Clients on several channels get one write per flush, not one per channel."""
        self.locksteps: dict[tuple[str, ...], Lockstep] = {}
        """Clients on several channels in step with all of them, by their channels."""
        self.lockstep_candidates: list[Callable[[], None]] = []
        """Clients on several channels written this flush: they may join a lockstep after it."""
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = -math.inf
        self._flush_waits = False
        """Whether the scheduled flush waits out the interval (a full batch cuts it short)."""
        self._conn: PubSubConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed_reason: str | None = None
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.messages = 0
        self.epoch = 0
        """Counts lost connections: positions learned before a loss are not trusted after it."""

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Hub:
        self._reader = asyncio.create_task(self._run(), name="hub-reader")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_all("shutdown")
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._drop_connection()

    def close_all(self, reason: str) -> None:
        """End every local stream (their clients reconnect elsewhere) and refuse new ones."""
        self._closed_reason = reason
        for topic in self._topics.values():
            for sink in topic.fanout:
                sink.close(reason)

    # -- subscriptions -----------------------------------------------------

    async def attach(self, channel: str) -> ChannelSink:
        """Register a sink for ``channel``; the caller must ``detach`` it in a ``finally``.

        A pair of calls rather than a context manager: a context manager object per
        channel and stream is memory thousands of idle streams need not carry."""
        sink = ChannelSink(channel, max_events=self._max_events, max_bytes=self._max_bytes)
        if self._closed_reason is not None:
            sink.close(self._closed_reason)
        topic = self._topics.get(channel)
        if topic is not None:
            topic.fanout.add(sink)
            return sink
        topic = Topic(channel, self._keyspace.live_channel(channel))
        self._topics[channel] = topic
        self._by_live[topic.live_name.encode()] = topic
        topic.fanout.add(sink)
        try:
            await self._send_subscribe(topic)
        except BaseException:
            await self.detach(sink)
            raise
        return sink

    async def detach(self, sink: ChannelSink) -> None:
        """Remove a sink; the last one of a channel unsubscribes it on Redis."""
        sink.deliver = sink.seat = None
        topic = self._topics.get(sink.channel)
        if topic is None or sink not in topic.fanout:
            return
        topic.fanout.discard(sink)
        if not topic.fanout:
            del self._topics[sink.channel]
            del self._by_live[topic.live_name.encode()]
            await self._send_unsubscribe(topic)

    async def wait_subscribed(self, channel: str) -> None:
        """Return once Redis confirmed the subscription: nothing published after is missed."""
        topic = self._topics[channel]
        await topic.acked.wait()

    def live_position(self, channel: str) -> bytes | None:
        """The newest id of a subscribed channel, if this connection has seen or learned it.

        Every entry published after it reaches this process's sinks, so a stream that
        starts live may start from here without reading history."""
        topic = self._topics.get(channel)
        if topic is None or not topic.acked.is_set():
            return None
        return topic.last_id

    def learn_position(self, channel: str, tip: bytes, since: int) -> None:
        """Remember a stream tip read from Redis after the subscription was confirmed
        (``since``: the epoch before waiting for it); a live message seen meanwhile wins."""
        topic = self._topics.get(channel)
        if topic is not None and topic.last_id is None and since == self.epoch:
            topic.last_id = tip

    async def _send_subscribe(self, topic: Topic) -> None:
        conn = self._conn
        if conn is None:
            return  # the reader subscribes every topic when it (re)connects
        live = topic.live_name.encode()
        self._outstanding[live] = self._outstanding.get(live, 0) + 1
        try:
            await conn.subscribe(topic.live_name)
        except CONNECTION_ERRORS as exc:
            log.debug("subscribe %s failed, the reader will retry: %s", topic.channel, exc)

    async def _send_unsubscribe(self, topic: Topic) -> None:
        conn = self._conn
        if conn is None:
            return
        live = topic.live_name.encode()
        self._outstanding[live] = self._outstanding.get(live, 0) + 1
        try:
            await conn.unsubscribe(topic.live_name)
        except CONNECTION_ERRORS as exc:
            log.debug("unsubscribe %s failed: %s", topic.channel, exc)

    # -- the reader --------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                await self._connect()
                attempt = 0
                await self._read_forever()
            except CONNECTION_ERRORS as exc:
                self._mark_disconnected()
                await self._drop_connection()
                delay = self._backoff.delay(attempt)
                attempt += 1
                log.warning("redis pub/sub connection lost (%s); reconnecting in %.2fs", exc, delay)
                await asyncio.sleep(delay)

    async def _connect(self) -> None:
        conn = PubSubConnection(self._redis_url)
        try:
            await conn.connect()
        except BaseException:
            await conn.close()
            raise
        self._outstanding.clear()
        # From here on new topics send their own SUBSCRIBE; the rest are sent below.
        self._conn = conn
        topics = list(self._topics.values())
        for topic in topics:
            self._outstanding[topic.live_name.encode()] = 1
        await conn.subscribe(*(topic.live_name for topic in topics))
        await conn.ping()
        first = not self.reconnects and not self.messages
        self.connected.set()
        if not first:
            log.info("redis pub/sub reconnected; resyncing %d channels", len(topics))
        for topic in topics:
            for sink in topic.fanout:
                sink.request_resync()

    def _mark_disconnected(self) -> None:
        if self.connected.is_set():
            self.reconnects += 1
        self.connected.clear()
        self.epoch += 1
        for topic in self._topics.values():
            topic.acked.clear()
            topic.last_id = None

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.close()

    async def _read_forever(self) -> None:
        conn = self._conn
        assert conn is not None
        awaiting_pong = False
        while True:
            reply = await conn.read(HEALTH_INTERVAL)
            if reply is None:
                if awaiting_pong:
                    raise TimeoutError("no reply to PING")
                awaiting_pong = True
                await conn.ping()
                continue
            awaiting_pong = False
            self._handle(reply)

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list):
            return  # b"PONG" before the first subscription
        kind = reply[0]
        if kind == b"message":
            topic = self._by_live.get(reply[1])
            if topic is None:
                return  # arrived after the last local client left
            self.messages += 1
            entry = Entry.from_live(topic.channel, decode_live(reply[2]))
            topic.last_id = entry.id
            if not topic.pending:
                self._dirty.append(topic)
            topic.pending.append(entry)
            topic.pending_bytes += len(entry.data)
            self._schedule_flush(topic.pending_bytes >= FULL_BATCH_BYTES)
        elif kind in (b"subscribe", b"unsubscribe"):
            live = reply[1]
            left = self._outstanding.get(live, 1) - 1
            if left > 0:
                self._outstanding[live] = left
                return
            self._outstanding.pop(live, None)
            topic = self._by_live.get(live)
            if topic is not None:
                topic.acked.set()
        # b"pong" (list form on a subscribed connection) needs nothing more.

    def _schedule_flush(self, full: bool = False) -> None:
        """Flush on the next loop turn, but at most once per ``flush_interval``: a quiet
        channel's event leaves at once, a busy one's events leave together. A ``full``
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
        dirty, self._dirty = self._dirty, []
        touched: list[Lockstep] = []
        for topic in dirty:
            batch = LiveBatch(topic.pending, topic.pending_bytes)
            topic.pending, topic.pending_bytes = [], 0
            topic.fanout.deliver(batch)
            for lockstep in topic.fanout.locksteps:
                if lockstep.take(batch):
                    touched.append(lockstep)
        for lockstep in touched:
            lockstep.flush()
        self.held_writes.release()
        joining, self.lockstep_candidates = self.lockstep_candidates, []
        for try_join in joining:
            try_join()

    # -- introspection -----------------------------------------------------

    def stats(self) -> HubStats:
        return HubStats(
            connected=self.connected.is_set(),
            channels=len(self._topics),
            sinks=sum(len(topic.fanout) for topic in self._topics.values()),
            seated=sum(topic.fanout.seated for topic in self._topics.values()),
            reconnects=self.reconnects,
            messages=self.messages,
        )

    def channel_names(self) -> list[str]:
        return sorted(self._topics)
