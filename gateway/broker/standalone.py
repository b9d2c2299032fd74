"""``RedisBroker``: the broker on one Redis server.

One pub/sub connection per process carries every subscribed channel: a
``_link.PubSubLink``, which tells the listener when the live flow was interrupted and
when it is back (the hub then has every stream read history after its position).

History pages are read with ``read.lua`` on a pooled client, retried with
backoff through outages (``_reads.PageReads``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from contract.backoff import Backoff
from contract.wire import Keyspace, script_source
from gateway.broker._link import PubSubLink
from gateway.broker._reads import PageReads
from gateway.broker.interface import BrokerListener, BrokerStats, NodeStats, Page

RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
"""What a history read meets while the server is away: read again after a backoff."""


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
        self.node = node_address(self._redis)
        self._reads = PageReads(
            self._redis.register_script(script_source("read")),
            keyspace,
            backoff=backoff,
            retryable=RETRYABLE,
            where=self.node,
        )
        self._link: PubSubLink | None = None

    # -- the live flow -------------------------------------------------------

    @contextlib.asynccontextmanager
    async def listening(self, listener: BrokerListener) -> AsyncIterator[None]:
        link = self._link = PubSubLink(self._redis_url, self.node, listener, backoff=self._backoff)
        link.start()
        try:
            yield
        finally:
            await link.stop()

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.connected

    async def subscribe(self, channel: str) -> None:
        assert self._link is not None, "subscribe() outside listening()"
        await self._link.add(self._keyspace.live_channel(channel).encode(), channel)

    async def unsubscribe(self, channel: str) -> None:
        if self._link is not None:
            await self._link.remove(self._keyspace.live_channel(channel).encode())

    # -- history ---------------------------------------------------------------

    async def read_page(self, channel: str, after: bytes | None, count: int) -> Page:
        return await self._reads.after(channel, after, count)

    async def read_page_before(self, channel: str, before: bytes | None, count: int) -> Page:
        return await self._reads.before(channel, before, count)

    async def ping(self) -> None:
        await self._redis.ping()

    def stats(self) -> BrokerStats:
        link = self._link
        if link is not None:
            node = link.stats()
        else:
            node = NodeStats(self.node, False, reconnects=0, messages=0, malformed_skipped=0)
        return BrokerStats(mode="standalone", nodes=(node,))

    async def aclose(self) -> None:
        if self._link is not None:
            await self._link.stop()
        await self._redis.aclose()
