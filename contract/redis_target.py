"""Where Redis is: ``REDIS_URL`` (one node, or a comma-separated seed list), its mode
(one server or a Redis Cluster), and a client for it.

The mode is detected at start from the first seed that answers ``INFO cluster``
(``cluster_enabled:1``). ``SSE_REDIS_MODE`` forces it: a forced mode that the server
contradicts stops the process with one line saying so, and a forced mode is trusted
when the server will not say (``INFO`` renamed or denied by an ACL). Producers and
gateways build their clients here, so both read the same ``REDIS_URL`` the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

CONNECT_TIMEOUT = 2.0
"""Seconds to open a connection to one node."""

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""What a node that does not answer (yet) raises: worth another try later."""


class RedisMode(StrEnum):
    STANDALONE = "standalone"
    CLUSTER = "cluster"


class RedisConfigError(ValueError):
    """A ``REDIS_URL`` or ``SSE_REDIS_MODE`` that cannot work; the message says why and
    what to change. Retrying does not help."""


@dataclass(frozen=True)
class RedisTarget:
    """The seed URLs of ``REDIS_URL`` and the mode ``SSE_REDIS_MODE`` forces (None: detect)."""

    urls: tuple[str, ...]
    forced_mode: RedisMode | None = None

    @classmethod
    def parse(cls, text: str, mode: str | RedisMode | None = None) -> RedisTarget:
        """Read ``REDIS_URL`` (and ``SSE_REDIS_MODE``: ``auto``, ``standalone``, ``cluster``).

        ``redis://a:7000,redis://b:7001`` and ``redis://:secret@a:7000,b:7001`` both name two
        seeds; a seed without a scheme takes the first one's scheme and credentials.
        """
        forced = _parse_mode(mode)
        parts = [part.strip() for part in text.split(",")]
        if not parts or not parts[0] or any(not part for part in parts):
            raise RedisConfigError(
                f"invalid REDIS_URL {','.join(map(redact_url, parts))!r}: give"
                " redis://host:port, or seed nodes separated by commas"
            )
        urls = tuple(_complete(part, parts[0]) for part in parts)
        for url in urls:
            try:
                parsed = parse_url(url)
            except ValueError as exc:
                raise RedisConfigError(f"invalid REDIS_URL {redact_url(url)!r}: {exc}") from None
            if len(urls) > 1 and "path" in parsed:
                raise RedisConfigError(
                    f"invalid REDIS_URL {redact_url(url)!r}: cluster seeds are redis:// or"
                    " rediss:// URLs, not unix sockets"
                )
        target = cls(urls, forced)
        if len(urls) > 1 and forced is RedisMode.STANDALONE:
            raise RedisConfigError(
                f"SSE_REDIS_MODE=standalone takes one REDIS_URL, but it lists {len(urls)} seed"
                " nodes: give one URL, or set SSE_REDIS_MODE=cluster"
            )
        if forced is RedisMode.CLUSTER or len(urls) > 1:
            target.check_cluster_url()
        return target

    @property
    def is_seed_list(self) -> bool:
        return len(self.urls) > 1

    def describe(self) -> str:
        """The seeds, credentials hidden, for logs and messages."""
        return ",".join(redact_url(url) for url in self.urls)

    def check_cluster_url(self) -> None:
        """Raise RedisConfigError if these URLs cannot address a Redis Cluster."""
        for url in self.urls:
            parsed = parse_url(url)
            if "path" in parsed:
                raise RedisConfigError(
                    f"REDIS_URL {redact_url(url)!r} is a unix socket: a Redis Cluster is reached"
                    " over redis:// or rediss://"
                )
            if parsed.get("db", 0) != 0:
                raise RedisConfigError(
                    f"REDIS_URL {redact_url(url)!r} selects database {parsed['db']}, but a Redis"
                    " Cluster has only database 0: drop the /<db> part"
                )

    async def detect_mode(self) -> RedisMode:
        """The mode of the first seed that answers, checked against the forced mode.

        Raises RedisConfigError on a contradiction, and what ``UNREACHABLE`` lists when no
        seed answers (the caller retries later).
        """
        last_error: BaseException | None = None
        for url in self.urls:
            probe = Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=CONNECT_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            try:
                info = await probe.info("cluster")
                if _enabled(info):
                    info = {**info, **await probe.info("server")}
            except ResponseError as exc:
                if self.forced_mode is not None:
                    return self.forced_mode  # INFO denied or renamed: trust the setting
                raise RedisConfigError(
                    f"cannot tell whether {redact_url(url)} is a Redis Cluster node (INFO cluster"
                    f" answered {exc}): set SSE_REDIS_MODE=standalone or SSE_REDIS_MODE=cluster"
                ) from None
            except UNREACHABLE as exc:
                last_error = exc
                continue
            finally:
                await probe.aclose()
            found = RedisMode.CLUSTER if _enabled(info) else RedisMode.STANDALONE
            self._check_mode(found, url)
            if found is RedisMode.CLUSTER:
                _check_sharded_pubsub(info, url)
            return found
        assert last_error is not None
        raise last_error

    def _check_mode(self, found: RedisMode, url: str) -> None:
        where = redact_url(url)
        if self.forced_mode is RedisMode.STANDALONE and found is RedisMode.CLUSTER:
            raise RedisConfigError(
                f"SSE_REDIS_MODE=standalone, but {where} is a Redis Cluster node"
                " (cluster_enabled:1): set SSE_REDIS_MODE=cluster, or leave it unset"
            )
        if found is RedisMode.STANDALONE and self.forced_mode is RedisMode.CLUSTER:
            raise RedisConfigError(
                f"SSE_REDIS_MODE=cluster, but {where} is a standalone Redis"
                " (cluster_enabled:0): point REDIS_URL at cluster nodes, or leave"
                " SSE_REDIS_MODE unset"
            )
        if found is RedisMode.STANDALONE and self.is_seed_list:
            raise RedisConfigError(
                f"REDIS_URL lists {len(self.urls)} seed nodes, as for a Redis Cluster, but"
                f" {where} is a standalone Redis (cluster_enabled:0): give one URL"
            )
        if found is RedisMode.CLUSTER:
            self.check_cluster_url()

    def client(self, mode: RedisMode, **options: Any) -> Redis | RedisCluster:
        """A client for ``mode`` that never retries on its own (its owner does, knowingly).

        ``options`` go to every connection (timeouts, ...). A cluster client starts from
        every seed and keeps serving the shards it can reach when another has no master.
        """
        options = {"socket_connect_timeout": CONNECT_TIMEOUT, **options}
        if mode is RedisMode.STANDALONE:
            return Redis.from_url(self.urls[0], retry=Retry(NoBackoff(), 0), **options)
        seeds = [parse_url(url) for url in self.urls[1:]]
        return RedisCluster.from_url(
            self.urls[0],
            startup_nodes=[ClusterNode(seed["host"], seed.get("port", 6379)) for seed in seeds],
            require_full_coverage=False,
            retry=Retry(NoBackoff(), 0),
            **options,
        )


def _parse_mode(mode: str | RedisMode | None) -> RedisMode | None:
    if mode is None or isinstance(mode, RedisMode):
        return mode
    if mode == "auto":
        return None
    try:
        return RedisMode(mode)
    except ValueError:
        raise RedisConfigError(
            f"invalid SSE_REDIS_MODE {mode!r}: use auto, standalone or cluster"
        ) from None


def _complete(part: str, first: str) -> str:
    """A seed written as ``host:port`` borrows the first URL's scheme and credentials."""
    if "://" in part or "://" not in first:
        return part
    head = urlsplit(first)
    credentials = head.netloc.rpartition("@")[0]
    return f"{head.scheme}://{credentials + '@' if credentials else ''}{part}"


def redact_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def _check_sharded_pubsub(info: dict[str, Any], url: str) -> None:
    version = str(info.get("redis_version", ""))
    major = version.split(".", 1)[0]
    if major.isdigit() and int(major) < 7:
        raise RedisConfigError(
            f"{redact_url(url)} runs Redis {version}, but on a cluster live events use sharded"
            " pub/sub (SPUBLISH, SSUBSCRIBE), which needs Redis 7.0 or later"
        )


def _enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", 0)) == "1"
