"""When to reconnect: the server's ``retry:`` hint, backed off and jittered.

The first reconnect after a stream that worked waits the gateway's ``retry:``
(a drain sends a short one); each failed attempt after that waits ``retry:``
again, then twice as long per failure, up to ``max_delay``. A 503's
``Retry-After`` is a floor over all of that. Every wait is drawn between its
base and 1.5 times it, so that clients cut at the same moment (a gateway
restart) come back spread out, and none sooner than it was asked to.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MIN_BACKOFF = 0.1
"""Seconds: the start of the backoff when the gateway's ``retry:`` is 0."""
LONGEST_WAIT = 3600.0
"""Seconds: the most any ``retry:`` or ``Retry-After`` may make the client wait."""


@dataclass(frozen=True)
class ReconnectDelay:
    max_delay: float = 30.0
    """Seconds: the longest backoff between failed attempts (``Retry-After`` may ask more)."""

    def delay(self, retry_ms: int, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt.

        ``failures``: attempts that failed since the last stream that opened (0: the
        stream itself ended, come back after ``retry:``).
        """
        retry = retry_ms / 1000
        if failures == 0:
            base = retry
        else:
            step = max(retry, MIN_BACKOFF)
            base = min(self.max_delay, step * 2 ** min(failures - 1, 32))
        if retry_after is not None:
            base = max(base, retry_after)
        # A misconfigured server or proxy must not park the client for days.
        base = min(base, LONGEST_WAIT)
        return random.uniform(base, base * 1.5)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delay-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
