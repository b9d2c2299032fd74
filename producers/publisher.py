"""The publisher API: ``await publisher.publish(channel, event)`` returns the entry id."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from contract.backoff import Backoff
from contract.channels import validate_channel
from contract.events import BaseEvent
from contract.wire import Keyspace, publish_args, script_source

log = logging.getLogger(__name__)

RETRYABLE = (RedisConnectionError, RedisTimeoutError, OSError)
RETRY_LOOKBACK_MARGIN_MS = 5_000
"""Added to a retry's look-back window for clock steps between Redis servers (failover)."""


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

    Connection failures are retried with backoff and logged, forever unless
    ``max_attempts`` is set: an event is never dropped silently. Retries are
    idempotent: each event carries a random token, and a retry whose earlier
    attempt was applied (only its reply was lost) returns that entry's id
    instead of appending the event again.
    """

    def __init__(
        self,
        redis: Redis,
        keyspace: Keyspace | None = None,
        retention: Retention | None = None,
        *,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
    ) -> None:
        self._redis = redis
        self._keyspace = keyspace or Keyspace()
        self._retention = retention or Retention()
        self._backoff = backoff or Backoff()
        self._max_attempts = max_attempts
        self._script = redis.register_script(script_source("publish"))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "sse",
        retention: Retention | None = None,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
    ) -> Self:
        """A publisher with its own Redis client (closed by ``aclose``)."""
        redis = Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=5.0,
            retry=Retry(NoBackoff(), 0),  # this class owns the retry policy
        )
        return cls(
            redis,
            Keyspace(prefix),
            retention,
            backoff=backoff,
            max_attempts=max_attempts,
        )

    async def publish(self, channel: str, event: BaseEvent[Any]) -> str:
        """Append ``event`` to ``channel``'s history, publish it live, return its id."""
        return await self.publish_raw(channel, event.event_name, event.encode_data())

    async def publish_raw(self, channel: str, event_name: str, data: bytes) -> str:
        """Publish pre-encoded payload JSON (one line) under an SSE event name."""
        validate_channel(channel)
        if not event_name or any(c in event_name for c in "\r\n:"):
            raise ValueError(f"invalid event name {event_name!r}")
        if b"\n" in data or b"\r" in data:
            raise ValueError("event data must be one line of JSON (encode newlines as \\n)")
        keys = [self._keyspace.history_key(channel)]
        token = secrets.token_urlsafe(12)
        first_attempt_at = time.monotonic()
        attempt = 0
        while True:
            # A retry looks back over everything appended since the first attempt was sent.
            lookback_ms = (
                int((time.monotonic() - first_attempt_at) * 1000) + RETRY_LOOKBACK_MARGIN_MS
                if attempt
                else 0
            )
            args = publish_args(
                live_channel=self._keyspace.live_channel(channel),
                event=event_name,
                data=data,
                maxlen=self._retention.maxlen,
                exact_trim=self._retention.exact_trim,
                max_age_ms=self._retention.max_age_ms,
                token=token,
                lookback_ms=lookback_ms,
            )
            try:
                entry_id = await self._script(keys=keys, args=args)
            except RETRYABLE as exc:
                attempt += 1
                if self._max_attempts is not None and attempt >= self._max_attempts:
                    raise PublishError(
                        f"could not publish to {channel!r} after {attempt} attempts"
                        f" (an attempt whose reply was lost may have been applied): {exc}"
                    ) from exc
                delay = self._backoff.delay(attempt)
                log.warning(
                    "publish to %r failed (attempt %d): %s; retrying in %.2fs",
                    channel,
                    attempt,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if attempt:
                log.info("publish to %r succeeded after %d failed attempts", channel, attempt)
            return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
