"""Publish attempts on a Redis Cluster: the script on the master of the channel's slot.

A channel's history key and live channel share the ``{channel}`` hash tag, so one
master holds both and ``publish.lua`` can ``SPUBLISH`` from inside. When replicas must
confirm an entry, ``WAIT`` has to run on the very connection that ran the script (it
counts replicas holding that connection's writes), so both go in one pipeline to the
slot's master. That pipeline is routed here rather than by redis-py, whose redirect
handling would resend the script alone: a ``MOVED`` refreshes the slot map and tries
again, an ``ASK`` (slot being migrated) resends ``ASKING`` + script + ``WAIT`` to the
importing node, a ``NOSCRIPT`` loads the script there first.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import AskError, MovedError, NoScriptError, RedisClusterException

from contract.wire import NOTIFY_SPUBLISH, decode_publish_reply, script_source
from producers.writer import AppendResult, count_online_replicas

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
"""Redirections followed within one attempt; more means the map is still settling."""


class ClusterWriter:
    """Runs ``publish.lua`` (and ``WAIT``) on the master that owns a key's slot."""

    notify_command = NOTIFY_SPUBLISH

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._script = cluster.register_script(script_source("publish"))

    async def shard_of(self, key: str) -> str:
        await self._cluster.initialize()  # no-op once the slot map is known
        return self._master_of(key).name

    async def append(
        self, key: str, args: list[Any], *, wait_replicas: int, wait_timeout_ms: int
    ) -> AppendResult:
        await self._cluster.initialize()  # no-op once the slot map is known
        asking: ClusterNode | None = None
        for _ in range(MAX_REDIRECTS):
            node = asking or self._master_of(key)
            pipe = self._cluster.pipeline(transaction=False)
            if asking is not None:
                pipe.execute_command("ASKING", target_nodes=node)
            pipe.execute_command("EVALSHA", self._script.sha, 1, key, *args, target_nodes=node)
            if wait_replicas:
                pipe.execute_command("WAIT", wait_replicas, wait_timeout_ms, target_nodes=node)
            replies = await pipe.execute(raise_on_error=False, allow_redirections=False)
            if asking is not None:
                replies = replies[1:]
            reply = replies[0]
            if isinstance(reply, NoScriptError):
                await self._cluster.execute_command(
                    "SCRIPT LOAD", self._script.script, target_nodes=node
                )
                continue
            if isinstance(reply, MovedError):
                log.info("slot of %r moved to %s:%s", key, reply.host, reply.port)
                await self.recover()
                asking = None
                continue
            if isinstance(reply, AskError):
                asking = self._cluster.get_node(host=reply.host, port=reply.port)
                if asking is None:  # a node the map does not know yet
                    await self.recover()
                continue
            for result in replies:
                if isinstance(result, Exception):
                    raise result
            entry_id, prev = decode_publish_reply(reply)
            return AppendResult(entry_id, prev, int(replies[1]) if wait_replicas else 0)
        raise AskError(f"{key!r} redirected {MAX_REDIRECTS} times in one attempt")

    async def notify(self, live_channel: str, message: bytes) -> None:
        await self._cluster.spublish(live_channel, message)

    async def online_replicas(self, key: str) -> int:
        await self._cluster.initialize()
        info = await self._cluster.execute_command(
            "INFO", "replication", target_nodes=self._master_of(key)
        )
        return count_online_replicas(info)

    async def recover(self) -> None:
        """Read the slot map again (concurrent callers share one refresh)."""
        await self._cluster.nodes_manager.initialize()

    def _master_of(self, key: str) -> ClusterNode:
        node = self._cluster.get_node_from_key(key)
        if node is None:
            raise RedisClusterException(f"no master serves the slot of {key!r}")
        return node

    async def aclose(self) -> None:
        await self._cluster.aclose()
