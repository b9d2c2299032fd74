"""The publisher API: ``await publisher.publish(channel, event)`` returns the entry id."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from redis.asyncio import Redis, RedisCluster

from contract.backoff import Backoff
from contract.channels import validate_channel
from contract.events import BaseEvent
from contract.redis_target import RedisMode, RedisTarget
from contract.wire import NOTIFY_LATER, Keyspace, encode_live, publish_args
from producers.cluster_writer import ClusterWriter
from producers.durability import Durability
from producers.writer import RETRYABLE, NotDurable, StandaloneWriter, Writer

log = logging.getLogger(__name__)

RETRY_LOOKBACK_MARGIN_MS = 5_000
"""Added to a retry's look-back window for clock steps between Redis servers (failover)."""
WAIT_TIMEOUT_MS = 1_000
"""How long one attempt waits for replicas to confirm an entry before it is retried."""
SOCKET_TIMEOUT = 5.0
"""Seconds a command may take beyond its own WAIT before the connection counts as lost."""

T = TypeVar("T")


class PublishError(Exception):
    """An event could not be published (after the configured retries)."""


@dataclass(frozen=True)
class Retention:
    """How much history each channel keeps (applied on every publish)."""

    maxlen: int = 10_000
    exact_trim: bool = False
    """Exact trimming costs more; approximate keeps at least ``maxlen`` entries."""
    max_age_ms: int = 0
    """0 keeps entries regardless of age."""

    def __post_init__(self) -> None:
        if self.maxlen < 1:
            raise ValueError("history maxlen must be at least 1")
        if self.max_age_ms < 0:
            raise ValueError("history max age must be >= 0")


class Publisher:
    """Publishes events atomically to a channel's history and live flow.

    Works on one Redis server or a Redis Cluster (``from_url`` tells which at the first
    publish, or at ``connect()``). Connection failures are retried with backoff and
    logged, forever unless ``max_attempts`` is set: an event is never dropped silently.
    Retries are idempotent: each event carries a random token, and a retry whose
    earlier attempt was applied (only its reply was lost) returns that entry's id
    instead of appending the event again, on the same master or on the replica that
    took over from it.

    ``replicas`` (None: 1 where the channel's shard has a replica online, else 0) is how
    many replicas must hold an event before ``publish`` returns and the event is sent
    live; see ``producers.durability``.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster | RedisTarget,
        keyspace: Keyspace | None = None,
        retention: Retention | None = None,
        *,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        replicas: int | None = None,
        wait_timeout_ms: int = WAIT_TIMEOUT_MS,
    ) -> None:
        """``redis`` is a client to use as it is, or a target to connect to on first use."""
        if wait_timeout_ms < 1:
            raise ValueError("the WAIT timeout must be at least 1 ms")
        self._keyspace = keyspace or Keyspace()
        self._retention = retention or Retention()
        self._backoff = backoff or Backoff()
        self._max_attempts = max_attempts
        self._durability = Durability(replicas)
        self._wait_timeout_ms = wait_timeout_ms
        self._target: RedisTarget | None = None
        self._writer: Writer | None = None
        self._mode: RedisMode | None = None
        self._connecting = asyncio.Lock()
        if isinstance(redis, RedisTarget):
            self._target = redis
        else:
            self._use(redis)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "sse",
        retention: Retention | None = None,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        mode: RedisMode | str | None = None,
        replicas: int | None = None,
        wait_timeout_ms: int = WAIT_TIMEOUT_MS,
    ) -> Self:
        """A publisher with its own Redis client (closed by ``aclose``).

        ``url`` names one node or a comma-separated seed list; ``mode`` (``standalone``,
        ``cluster``, or None to detect) is checked against the server when it connects.
        Raises ``contract.redis_target.RedisConfigError`` for a URL that cannot work.
        """
        return cls(
            RedisTarget.parse(url, mode),
            Keyspace(prefix),
            retention,
            backoff=backoff,
            max_attempts=max_attempts,
            replicas=replicas,
            wait_timeout_ms=wait_timeout_ms,
        )

    @property
    def mode(self) -> RedisMode | None:
        """The mode of the Redis this publisher talks to (None until it connected)."""
        return self._mode

    async def connect(self) -> RedisMode:
        """Find out the server's mode and build the client, retrying while Redis is
        unreachable. Raises RedisConfigError when the server contradicts the settings."""
        await self._retrying("connect to Redis", lambda _: self._connected(), writes=False)
        assert self._mode is not None
        return self._mode

    async def publish(
        self,
        channel: str,
        event: BaseEvent[Any],
        *,
        token: str | None = None,
        dedupe_window_ms: int = 0,
    ) -> str:
        """Append ``event`` to ``channel``'s history, publish it live, return its id.

        ``token`` (default: a random one) identifies the event: a publish whose token an
        entry of the channel from the last ``dedupe_window_ms`` already carries appends
        nothing and returns that entry's id, so a caller that retries with the same
        token (an ``Idempotency-Key``) publishes once.
        """
        return await self.publish_raw(
            channel,
            event.event_name,
            event.encode_data(),
            token=token,
            dedupe_window_ms=dedupe_window_ms,
        )

    async def publish_raw(
        self,
        channel: str,
        event_name: str,
        data: bytes,
        *,
        token: str | None = None,
        dedupe_window_ms: int = 0,
    ) -> str:
        """Publish pre-encoded payload JSON (one line) under an SSE event name
        (``token`` and ``dedupe_window_ms``: see ``publish``)."""
        validate_channel(channel)
        if not event_name or any(c in event_name for c in "\r\n:"):
            raise ValueError(f"invalid event name {event_name!r}")
        if b"\n" in data or b"\r" in data:
            raise ValueError("event data must be one line of JSON (encode newlines as \\n)")
        if token is not None and not token:
            raise ValueError("an event's token must not be empty")
        if dedupe_window_ms < 0:
            raise ValueError("the dedupe window must be >= 0 ms")
        key = self._keyspace.history_key(channel)
        live = self._keyspace.live_channel(channel)
        token = token or secrets.token_urlsafe(12)
        first_attempt_at = time.monotonic()
        # Decided once per event: an entry appended without its notification keeps being
        # retried that way, so that its notification is sent whatever the retries find.
        notify_later: bool | None = None

        async def attempt(failures: int) -> bytes:
            nonlocal notify_later
            writer = await self._connected()
            required = await self._durability.required(writer, key)
            if notify_later is None:
                notify_later = required > 0
            # A retry looks back over everything appended since the first attempt was sent.
            lookback_ms = (
                int((time.monotonic() - first_attempt_at) * 1000) + RETRY_LOOKBACK_MARGIN_MS
                if failures
                else 0
            )
            lookback_ms = max(lookback_ms, dedupe_window_ms)
            args = publish_args(
                live_channel=live,
                event=event_name,
                data=data,
                maxlen=self._retention.maxlen,
                exact_trim=self._retention.exact_trim,
                max_age_ms=self._retention.max_age_ms,
                token=token,
                lookback_ms=lookback_ms,
                notify=NOTIFY_LATER if notify_later else writer.notify_command,
                wait_follows=required > 0,
            )
            result = await writer.append(
                key, args, wait_replicas=required, wait_timeout_ms=self._wait_timeout_ms
            )
            if result.acked < required and not await self._durability.accept_shortfall(
                writer, key, result.acked
            ):
                raise NotDurable(
                    f"{result.acked} of {required} replica(s) confirmed entry"
                    f" {result.entry_id.decode()} within {self._wait_timeout_ms} ms"
                )
            if notify_later:
                await writer.notify(
                    live, encode_live(result.entry_id, result.prev, event_name.encode(), data)
                )
            return result.entry_id

        entry_id = await self._retrying(f"publish to {channel!r}", attempt)
        return entry_id.decode()

    async def _retrying(
        self, what: str, attempt: Callable[[int], Awaitable[T]], *, writes: bool = True
    ) -> T:
        """Run ``attempt(failures so far)`` until it succeeds, backing off between tries.

        ``writes``: an attempt may have been applied though it failed (its reply was lost).
        """
        failures = 0
        while True:
            try:
                result = await attempt(failures)
            except RETRYABLE as exc:
                failures += 1
                if self._max_attempts is not None and failures >= self._max_attempts:
                    maybe = " (an attempt whose reply was lost may have been applied)"
                    raise PublishError(
                        f"could not {what} after {failures} attempts{maybe if writes else ''}:"
                        f" {exc}"
                    ) from exc
                delay = self._backoff.delay(failures)
                log.warning(
                    "%s failed (attempt %d): %s; retrying in %.2fs", what, failures, exc, delay
                )
                await asyncio.sleep(delay)
                await self._recover()
                continue
            if failures:
                log.info("%s succeeded after %d failed attempts", what, failures)
            return result

    async def _connected(self) -> Writer:
        if self._writer is not None:
            return self._writer
        async with self._connecting:  # concurrent first publishes connect once
            if self._writer is None:
                assert self._target is not None
                mode = await self._target.detect_mode()
                client = self._target.client(
                    mode, socket_timeout=SOCKET_TIMEOUT + self._wait_timeout_ms / 1000
                )
                self._use(client)
                log.debug("publishing to %s (%s)", self._target.describe(), mode)
            assert self._writer is not None
            return self._writer

    def _use(self, client: Redis | RedisCluster) -> None:
        if isinstance(client, RedisCluster):
            self._writer, self._mode = ClusterWriter(client), RedisMode.CLUSTER
        else:
            self._writer, self._mode = StandaloneWriter(client), RedisMode.STANDALONE

    async def _recover(self) -> None:
        if self._writer is None:
            return
        try:
            await self._writer.recover()
        except RETRYABLE as exc:
            log.debug("no fresh view of Redis yet: %s", exc)

    async def aclose(self) -> None:
        if self._writer is not None:
            await self._writer.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
