"""``PubSubLink``: one node's pub/sub connection, the channels it carries, its reconnects.

Shared by both brokers: ``RedisBroker`` has one link (classic ``SUBSCRIBE``), the
cluster broker one per master it needs (sharded ``SSUBSCRIBE``). A link is driven by
hand (``_pubsub.PubSubConnection``) so that it knows exactly when its live flow was
interrupted: on any failure (an error reply included) it tells the listener which
channels stopped, waits out a backoff with jitter, lets its owner look at the topology
(``before_reconnect``: it may move channels to another link, or end this one),
connects, subscribes every channel it still carries again and tells the listener they
are back; the hub then has every stream on them read history.
A subscription is confirmed to the listener only once Redis acknowledged the last
(S)SUBSCRIBE sent for the channel on this connection.

A ``sunsubscribe`` that the link did not ask for is the server dropping the channel
(its slot moved to another master): the owner is told (``dropped``) and moves it.

A live message that cannot be decoded (anyone with Redis access can publish one) is
logged, counted and skipped; it never costs the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError, ResponseError

from contract.backoff import Backoff
from gateway.broker._pubsub import PubSubConnection
from gateway.broker.entry import Entry
from gateway.broker.interface import BrokerListener, NodeStats

log = logging.getLogger(__name__)

HEALTH_INTERVAL = 5.0
"""Seconds of silence after which the connection is PINGed; two silent intervals mean dead."""

CONNECTION_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

MALFORMED_LOG_INTERVAL = 10.0
"""Seconds between two log lines about malformed live messages (each one is counted)."""


@dataclass(frozen=True)
class Commands:
    """The pub/sub dialect of a link: classic channels, or sharded ones (Redis Cluster)."""

    subscribe: str
    unsubscribe: str
    message: bytes
    acks: tuple[bytes, bytes]
    unsubscribed: bytes
    batched: bool
    """Whether one command may name many channels (SSUBSCRIBE takes one slot's only)."""


CLASSIC = Commands(
    "SUBSCRIBE", "UNSUBSCRIBE", b"message", (b"subscribe", b"unsubscribe"), b"unsubscribe", True
)
SHARDED = Commands(
    "SSUBSCRIBE",
    "SUNSUBSCRIBE",
    b"smessage",
    (b"ssubscribe", b"sunsubscribe"),
    b"sunsubscribe",
    False,
)


class PubSubLink:
    """The live flow of some channels from one node, kept up until ``stop``."""

    def __init__(
        self,
        url: str,
        node: str,
        listener: BrokerListener,
        *,
        backoff: Backoff,
        commands: Commands = CLASSIC,
        before_reconnect: Callable[[PubSubLink], Awaitable[bool]] | None = None,
        dropped: Callable[[PubSubLink, bytes], None] | None = None,
    ) -> None:
        self.url = url
        self.node = node
        """The node's address (``host:port``, or a socket path): the ``node`` label."""
        self._listener = listener
        self._backoff = backoff
        self._commands = commands
        self._before_reconnect = before_reconnect
        self._dropped = dropped
        self.channels: dict[bytes, str] = {}
        """Channels this link carries, by their live pub/sub name."""
        self._outstanding: dict[bytes, int] = {}
        """(UN)SUBSCRIBEs sent on this connection and not yet acknowledged, by live name."""
        self._conn: PubSubConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.reconnects = 0
        self.messages = 0
        self.malformed = 0
        self._malformed_logged = -MALFORMED_LOG_INTERVAL

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pubsub-{self.node}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_connection()
        self.connected = False

    def stats(self) -> NodeStats:
        return NodeStats(
            node=self.node,
            connected=self.connected,
            reconnects=self.reconnects,
            messages=self.messages,
            malformed_skipped=self.malformed,
        )

    # -- channels ------------------------------------------------------------------

    async def add(self, live: bytes, channel: str) -> None:
        self.channels[live] = channel
        await self._send(self._commands.subscribe, live)

    async def remove(self, live: bytes) -> None:
        if self.channels.pop(live, None) is not None:
            await self._send(self._commands.unsubscribe, live)

    def forget(self, live: bytes) -> str | None:
        """Stop carrying ``live`` without telling the node (it already dropped it, or is gone)."""
        self._outstanding.pop(live, None)
        return self.channels.pop(live, None)

    async def release(self, live: bytes) -> None:
        """Tell the node to stop sending ``live``, which this link no longer carries."""
        await self._send(self._commands.unsubscribe, live)

    async def _send(self, command: str, live: bytes) -> None:
        conn = self._conn
        if conn is None:
            return  # the reader subscribes every channel when it (re)connects
        self._outstanding[live] = self._outstanding.get(live, 0) + 1
        try:
            await conn.send(command, live)
        except CONNECTION_ERRORS as exc:
            log.debug("%s %s failed, the reader will retry: %s", command, live, exc)

    # -- the connection ------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        down_since: float | None = None
        while True:
            try:
                await self._connect()
                if down_since is not None:
                    log.info(
                        "redis pub/sub reconnected",
                        extra={
                            "node": self.node,
                            "down_s": round(time.monotonic() - down_since, 3),
                            "attempts": attempt,
                            "channels": len(self.channels),
                        },
                    )
                attempt, down_since = 0, None
                await self._read_forever()
            except CONNECTION_ERRORS as exc:
                was_connected = self.connected
                self._interrupted()
                await self._drop_connection()
                delay = self._backoff.delay(attempt)
                attempt += 1
                error = str(exc) or type(exc).__name__
                if isinstance(exc, ResponseError):  # MOVED's text alone is "3999 host:port"
                    error = f"{type(exc).__name__}: {error}"
                fields = {"node": self.node, "error": error}
                if down_since is None:  # one line per outage; its attempts at DEBUG
                    down_since = time.monotonic()
                    message = (
                        "redis pub/sub connection lost"
                        if was_connected
                        else "redis pub/sub connection failed"
                    )
                    log.warning(message, extra={**fields, "retry_in_s": round(delay, 3)})
                else:
                    log.debug(
                        "redis pub/sub reconnect failed",
                        extra={**fields, "attempt": attempt, "retry_in_s": round(delay, 3)},
                    )
                await asyncio.sleep(delay)
                if self._before_reconnect is not None and not await self._before_reconnect(self):
                    return  # the owner moved every channel away: this node is not needed

    async def _connect(self) -> None:
        conn = PubSubConnection(self.url)
        try:
            await conn.connect()
        except BaseException:
            await conn.close()
            raise
        self._outstanding.clear()
        # From here on new channels send their own SUBSCRIBE; the rest are sent below.
        self._conn = conn
        lives = list(self.channels)
        for live in lives:
            self._outstanding[live] = 1
        await self._subscribe_all(conn, lives)
        await conn.send("PING")
        self.connected = True
        self._listener.resumed([self.channels[live] for live in lives if live in self.channels])

    async def _subscribe_all(self, conn: PubSubConnection, lives: list[bytes]) -> None:
        if not lives:
            return
        if self._commands.batched:
            await conn.send(self._commands.subscribe, *lives)
            return
        for live in lives:
            await conn.send(self._commands.subscribe, live)

    def _interrupted(self) -> None:
        if self.connected:
            self.reconnects += 1
        self.connected = False
        self._listener.interrupted(list(self.channels.values()))

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
                await conn.send("PING")
                continue
            awaiting_pong = False
            self._handle(reply)

    def _handle(self, reply: Any) -> None:
        if not isinstance(reply, list):
            return  # b"PONG" before the first subscription
        kind, commands = reply[0], self._commands
        if kind == commands.message:
            channel = self.channels.get(reply[1])
            if channel is None:
                return  # arrived after the channel was unsubscribed
            self.messages += 1
            try:
                entry = Entry.from_live(channel, reply[2])
            except ValueError as exc:
                self._skip_malformed(channel, reply[2], exc)
                return
            self._listener.live_entry(entry)
        elif kind in commands.acks:
            live = reply[1]
            left = self._outstanding.get(live, 0) - 1
            if left > 0:
                self._outstanding[live] = left
                return
            self._outstanding.pop(live, None)
            channel = self.channels.get(live)
            if channel is None:
                return
            if left < 0 and kind == commands.unsubscribed:
                # Not ours: the server dropped the channel (its slot moved away).
                if self._dropped is not None:
                    self._dropped(self, live)
                return
            self._listener.subscribed(channel)
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
