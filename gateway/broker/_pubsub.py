"""A lean Redis pub/sub connection for the broker.

redis-py's ``PubSub`` reconnects and re-subscribes behind the caller's back
and does bookkeeping per message. The broker must know when the live flow was
interrupted (to backfill from history) and handles many messages per second,
so it drives a plain redis-py ``Connection`` itself: send SUBSCRIBE /
UNSUBSCRIBE / PING, read replies one by one.
"""

from __future__ import annotations

import math
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool


class PubSubConnection:
    """One subscriber connection; any failure surfaces as an exception to the caller."""

    def __init__(self, redis_url: str, *, connect_timeout: float = 2.0) -> None:
        self._pool = ConnectionPool.from_url(
            redis_url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=None,
            socket_keepalive=True,
            retry=None,
        )
        self._conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]

    async def connect(self) -> None:
        await self._conn.connect()  # type: ignore[no-untyped-call]

    async def send(self, command: str, *args: str | bytes) -> None:
        """Send SUBSCRIBE, UNSUBSCRIBE or PING; their replies come through ``read``."""
        await self._conn.send_command(command, *args, check_health=False)

    async def read(self, within: float | None) -> Any:
        """The next reply (``[kind, channel, data]``), or None after ``within`` seconds."""
        return await self._conn.read_response(
            timeout=math.inf if within is None else within,
            disconnect_on_error=True,
            push_request=True,
        )

    async def close(self) -> None:
        await self._conn.disconnect(nowait=True)
        await self._pool.aclose()
