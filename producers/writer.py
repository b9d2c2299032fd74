"""One attempt to publish, on one server: append (and WAIT), notify, count replicas.

``Publisher`` owns retries and durability decisions; a ``Writer`` knows where a key
lives and how to reach it. ``StandaloneWriter`` talks to one server;
``producers.cluster_writer.ClusterWriter`` to the master of a key's slot.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from redis.asyncio import Redis
from redis.exceptions import (
    AskError,
    ClusterDownError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)

from contract.redis_target import UNREACHABLE, RedisConfigError
from contract.wire import NOTIFY_PUBLISH, decode_publish_reply, script_source


class NotDurable(Exception):
    """Fewer replicas than required confirmed an entry before WAIT timed out."""


RETRYABLE = (
    *UNREACHABLE,
    ClusterDownError,  # a shard lost its master and no replica took over yet
    TryAgainError,  # a slot in the middle of a migration
    ReadOnlyError,  # a write reached a node that is a replica now (failover)
    AskError,  # redirected more often than a slot move explains (also MovedError)
    RedisClusterException,  # no seed answers, or a slot no master covers right now
    NotDurable,
)
"""Failures a later attempt can get past: retried with the same token, never dropped."""


class AppendResult(NamedTuple):
    entry_id: bytes
    prev: bytes
    acked: int
    """Replicas that confirmed the entry (0 when no WAIT was sent)."""


class Writer(Protocol):
    """Where a channel's keys live, and the commands of one publish attempt there."""

    notify_command: str
    """How ``publish.lua`` notifies in the same step: ``PUBLISH`` or ``SPUBLISH``."""

    async def shard_of(self, key: str) -> str:
        """A name for the server that holds ``key`` (its master, in a cluster)."""
        ...

    async def append(
        self, key: str, args: list[Any], *, wait_replicas: int, wait_timeout_ms: int
    ) -> AppendResult:
        """Run ``publish.lua`` on ``key``'s master, then ``WAIT`` on the same connection
        if ``wait_replicas`` > 0."""
        ...

    async def notify(self, live_channel: str, message: bytes) -> None:
        """Send a live message on ``live_channel`` (after the entry was confirmed)."""
        ...

    async def online_replicas(self, key: str) -> int:
        """Replicas of ``key``'s master that are connected and in sync right now."""
        ...

    async def recover(self) -> None:
        """After a failed attempt: learn where keys live now (a failover, a slot move)."""
        ...

    async def aclose(self) -> None: ...


def count_online_replicas(info: dict[str, Any]) -> int:
    """Replicas in ``INFO replication`` whose state is ``online`` (done syncing)."""
    return sum(
        1
        for name, value in info.items()
        if name.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )


class StandaloneWriter:
    """One Redis server: the script by SHA, and WAIT pipelined on the same connection."""

    notify_command = NOTIFY_PUBLISH

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._script = redis.register_script(script_source("publish"))

    async def shard_of(self, key: str) -> str:
        return "server"

    async def append(
        self, key: str, args: list[Any], *, wait_replicas: int, wait_timeout_ms: int
    ) -> AppendResult:
        try:
            return await self._append(key, args, wait_replicas, wait_timeout_ms)
        except AskError as exc:  # also MOVED: only a cluster node redirects
            raise RedisConfigError(
                f"the Redis server redirected a publish ({exc}): it is a Redis Cluster node;"
                " give Publisher a RedisCluster client, or use Publisher.from_url"
            ) from None

    async def _append(
        self, key: str, args: list[Any], wait_replicas: int, wait_timeout_ms: int
    ) -> AppendResult:
        if not wait_replicas:
            entry_id, prev = decode_publish_reply(await self._script(keys=[key], args=args))
            return AppendResult(entry_id, prev, 0)
        for _ in range(2):
            # A pipeline keeps both on one connection: WAIT counts replicas that hold
            # this connection's writes.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._script.sha, 1, key, *args)
                pipe.wait(wait_replicas, wait_timeout_ms)
                reply, acked = await pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError):
                await self._redis.script_load(self._script.script)
                continue
            for result in (reply, acked):
                if isinstance(result, Exception):
                    raise result
            entry_id, prev = decode_publish_reply(reply)
            return AppendResult(entry_id, prev, int(acked))
        raise NoScriptError("the server forgot publish.lua right after loading it")

    async def notify(self, live_channel: str, message: bytes) -> None:
        await self._redis.publish(live_channel, message)

    async def online_replicas(self, key: str) -> int:
        return count_online_replicas(await self._redis.info("replication"))

    async def recover(self) -> None:
        """Nothing to learn: the client reconnects to the one server on its next command."""

    async def aclose(self) -> None:
        await self._redis.aclose()
