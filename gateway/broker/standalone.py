"""``RedisBroker``: the broker on one Redis server.

One pub/sub connection per process carries every subscribed channel. It is
driven by hand (``_pubsub.PubSubConnection``) so that the broker knows exactly
when the live flow was interrupted: on any failure it tells its listener,
reconnects with backoff and jitter, subscribes every channel again and tells
the listener the flow is back, and the hub then has every stream read history
after its position. Subscriptions are confirmed to the listener only once
Redis acknowledged the last SUBSCRIBE sent for the channel.

A live message that cannot be decoded (anyone with Redis access can
``PUBLISH`` one) is logged, counted and skipped; it never costs the connection.

History pages are read with ``read.lua`` on a pooled client, retried with
backoff through outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contract.backoff import Backoff
from contract.wire import NO_ENTRY_ID, Keyspace, read_args, read_before_args, script_source
from gateway.broker._pubsub import PubSubConnection
from gateway.broker.entry import Entry, StreamKey, stream_key
from gateway.broker.interface import BrokerListener, BrokerStats, HistoryRefused, NodeStats, Page

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 5.0
"""Seconds of silence after which the connection is PINGed; two silent intervals mean dead."""

CONNECTION_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

LARGEST_ID: StreamKey = (2**64 - 1, 2**64 - 1)
"""The largest stream id Redis can represent: a valid position, with nothing after it."""

MALFORMED_LOG_INTERVAL = 10.0
"""Seconds between two log lines about malformed live messages (each one is counted)."""

READ_FAILURE_LOG_INTERVAL = 10.0
"""Seconds between two log lines about failed history reads: in an outage every stream
that reads history retries, and one line says as much as thousands."""


def node_address(redis: Redis) -> str:
    """The server a client talks to, as ``host:port`` or a socket path (no credentials)."""
    kwargs = redis.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


class RedisBroker:
    """The live flow and history of channels on one Redis server."""

    def __init__(
        self,
        redis_url: str,
        keyspace: Keyspace,
        *,
        backoff: Backoff,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
    ) -> None:
        self._redis_url = redis_url
        self._keyspace = keyspace
        self._backoff = backoff
        self._redis = Redis.from_url(
            redis_url, socket_connect_timeout=connect_timeout, socket_timeout=read_timeout
        )
        self._read_script = self._redis.register_script(script_source("read"))
        self.node = node_address(self._redis)
        self._channels: dict[bytes, str] = {}
        """Subscribed channels by their live pub/sub name."""
        self._outstanding: dict[bytes, int] = {}
        """(UN)SUBSCRIBEs sent on this connection and not yet acknowledged, by live name."""
        self._conn: PubSubConnection | None = None
        self._listener: BrokerListener | None = None
        self._connected = False
        self.reconnects = 0
        self.messages = 0
        self.malformed = 0
        self._malformed_logged = -MALFORMED_LOG_INTERVAL
        self._read_failures = 0
        """History read attempts failed since the last line that said so."""
        self._read_failure_logged = -READ_FAILURE_LOG_INTERVAL

    # -- the live flow -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def listening(self, listener: BrokerListener) -> AsyncIterator[None]:
        self._listener = listener
        reader = asyncio.create_task(self._run(listener), name="broker-reader")
        try:
            yield
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await self._drop_connection()
            self._listener = None

    @property
    def connected(self) -> bool:
        return self._connected

    async def subscribe(self, channel: str) -> None:
        live = self._keyspace.live_channel(channel).encode()
        self._channels[live] = channel
        await self._send("SUBSCRIBE", live)

    async def unsubscribe(self, channel: str) -> None:
        live = self._keyspace.live_channel(channel).encode()
        if self._channels.pop(live, None) is not None:
            await self._send("UNSUBSCRIBE", live)

    async def _send(self, command: str, live: bytes) -> None:
        conn = self._conn
        if conn is None:
            return  # the reader subscribes every channel when it (re)connects
        self._outstanding[live] = self._outstanding.get(live, 0) + 1
        try:
            await conn.send(command, live)
        except CONNECTION_ERRORS as exc:
            log.debug("%s %s failed, the reader will retry: %s", command, live, exc)

    async def _run(self, listener: BrokerListener) -> None:
        attempt = 0
        down_since: float | None = None
        while True:
            try:
                await self._connect(listener)
                if down_since is not None:
                    log.info(
                        "redis pub/sub reconnected",
                        extra={
                            "node": self.node,
                            "down_s": round(time.monotonic() - down_since, 3),
                            "attempts": attempt,
                            "channels": len(self._channels),
                        },
                    )
                attempt, down_since = 0, None
                await self._read_forever(listener)
            except CONNECTION_ERRORS as exc:
                was_connected = self._connected
                self._interrupted(listener)
                await self._drop_connection()
                delay = self._backoff.delay(attempt)
                attempt += 1
                fields = {"node": self.node, "error": str(exc) or type(exc).__name__}
                if down_since is None:  # one line per outage; its attempts at DEBUG
                    down_since = time.monotonic()
                    message = (
                        "redis pub/sub connection lost"
                        if was_connected
                        else ("redis pub/sub connection failed")
                    )
                    log.warning(message, extra={**fields, "retry_in_s": round(delay, 3)})
                else:
                    log.debug(
                        "redis pub/sub reconnect failed",
                        extra={**fields, "attempt": attempt, "retry_in_s": round(delay, 3)},
                    )
                await asyncio.sleep(delay)

    async def _connect(self, listener: BrokerListener) -> None:
        conn = PubSubConnection(self._redis_url)
        try:
            await conn.connect()
        except BaseException:
            await conn.close()
            raise
        self._outstanding.clear()
        # From here on new channels send their own SUBSCRIBE; the rest are sent below.
        self._conn = conn
        lives = list(self._channels)
        for live in lives:
            self._outstanding[live] = 1
        if lives:
            await conn.send("SUBSCRIBE", *lives)
        await conn.send("PING")
        self._connected = True
        listener.resumed([self._channels[live] for live in lives if live in self._channels])

    def _interrupted(self, listener: BrokerListener) -> None:
        if self._connected:
            self.reconnects += 1
        self._connected = False
        listener.interrupted(list(self._channels.values()))

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.close()

    async def _read_forever(self, listener: BrokerListener) -> None:
        conn = self._conn
        assert conn is not None
        awaiting_pong = False
        while True:
            reply = await conn.read(HEALTH_INTERVAL)
            if reply is None:
                if awaiting_pong:
                    raise TimeoutError("no reply to PING")
                awaiting_pong = True
                await conn.send("PING")
                continue
            awaiting_pong = False
            self._handle(reply, listener)

    def _handle(self, reply: Any, listener: BrokerListener) -> None:
        if not isinstance(reply, list):
            return  # b"PONG" before the first subscription
        kind = reply[0]
        if kind == b"message":
            channel = self._channels.get(reply[1])
            if channel is None:
                return  # arrived after the channel was unsubscribed
            self.messages += 1
            try:
                entry = Entry.from_live(channel, reply[2])
            except ValueError as exc:
                self._skip_malformed(channel, reply[2], exc)
                return
            listener.live_entry(entry)
        elif kind in (b"subscribe", b"unsubscribe"):
            live = reply[1]
            left = self._outstanding.get(live, 1) - 1
            if left > 0:
                self._outstanding[live] = left
                return
            self._outstanding.pop(live, None)
            channel = self._channels.get(live)
            if channel is not None:
                listener.subscribed(channel)
        # b"pong" (list form on a subscribed connection) needs nothing more.

    def _skip_malformed(self, channel: str, payload: Any, exc: ValueError) -> None:
        self.malformed += 1
        now = time.monotonic()
        if now - self._malformed_logged >= MALFORMED_LOG_INTERVAL:
            self._malformed_logged = now
            log.warning(
                "skipped a malformed live message on channel %r (%s; %d skipped so far): %r",
                channel,
                exc,
                self.malformed,
                bytes(payload)[:80] if isinstance(payload, bytes | bytearray) else payload,
                extra={"node": self.node, "channel": channel, "skipped": self.malformed},
            )

    # -- history ---------------------------------------------------------------

    async def read_page(self, channel: str, after: bytes | None, count: int) -> Page:
        if after is not None and stream_key(after) == LARGEST_ID:
            # Nothing can follow the largest id, and XRANGE refuses to look: read the tip.
            count = 0
        return await self._read_page(channel, read_args(after, count))

    async def read_page_before(self, channel: str, before: bytes | None, count: int) -> Page:
        if before == NO_ENTRY_ID:
            count = 0  # nothing precedes 0-0, and XREVRANGE refuses to look
        page = await self._read_page(channel, read_before_args(before, count))
        return Page(page.tip, page.entries[::-1])

    async def _read_page(self, channel: str, args: list[Any]) -> Page:
        key = self._keyspace.history_key(channel)
        attempt = 0
        while True:
            try:
                tip, raw = await self._read_script(keys=[key], args=args)
                break
            except ResponseError as exc:
                raise HistoryRefused(f"history of {channel!r} ({args[0]!r}): {exc}") from None
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # Streams stay open through a Redis outage: wait and read again.
                delay = self._backoff.delay(attempt)
                attempt += 1
                self._read_failed(channel, exc)
                await asyncio.sleep(delay)
        entries = tuple(Entry.from_history(channel, entry_id, fields) for entry_id, fields in raw)
        return Page(tip or NO_ENTRY_ID, entries)

    def _read_failed(self, channel: str, exc: BaseException) -> None:
        self._read_failures += 1
        now = time.monotonic()
        if now - self._read_failure_logged >= READ_FAILURE_LOG_INTERVAL:
            self._read_failure_logged = now
            failures, self._read_failures = self._read_failures, 0
            log.warning(
                "history reads failing; streams wait and retry",
                extra={
                    "node": self.node,
                    "channel": channel,
                    "error": str(exc) or type(exc).__name__,
                    "failures": failures,
                },
            )

    async def ping(self) -> None:
        await self._redis.ping()

    def stats(self) -> BrokerStats:
        node = NodeStats(
            node=self.node,
            connected=self._connected,
            reconnects=self.reconnects,
            messages=self.messages,
            malformed_skipped=self.malformed,
        )
        return BrokerStats(mode="standalone", nodes=(node,))

    async def aclose(self) -> None:
        await self._drop_connection()
        await self._redis.aclose()
