"""The counts a gateway process keeps of its own work, in plain Python.

One ``Metrics`` per process, made by the app factory and handed explicitly to
each part that counts. Hot paths add plain integers, per flush or per stream,
never per delivery: a fan-out group adds ``written * entries`` once per flush.
``/stats`` reads these numbers and the Prometheus export copies them into its
instruments (``gateway.metrics.prometheus``): there is no second set.

Gauges (open streams, subscribed channels, the Redis connection) are not kept
here: they are read from their owners when they are exported.
"""

from __future__ import annotations

from collections import Counter

from gateway.metrics.histogram import FLUSH_BOUNDS, LATENCY_BOUNDS, Buckets

CLOSE_REASONS = (
    "disconnect",
    "shutdown",
    "shutdown_forced",
    "slow_consumer",
    "send_timeout",
    "write_failed",
    "token_expired",
    "error",
)
"""Why streams end (``sse_gateway_streams_closed_total{reason}``): the client left; the
gateway drained; the drain's grace period ran out; a client's buffer overflowed; a write
blocked past SSE_SEND_TIMEOUT; a write failed otherwise; its token expired; a bug."""

RESUME_STARTS = ("cursor", "earliest", "cursor_invalid")
"""How streams that did not start live started: from a cursor, from the earliest retained
entry, or live after a cursor that could not be read."""

PAGE_SOURCES = ("redis", "cache", "shared")
"""Where a history page came from: a Redis read, the page cache, or a read in flight for
another stream."""

GAP_REASONS = ("trimmed", "lost")

OTHER_CHANNELS = "_other"
"""The ``channel`` label of every channel past the per-process cap."""


class ChannelCounts:
    """Per-channel counts for the first ``limit`` channels seen; the rest add up as one.

    A channel label per channel is unbounded cardinality for Prometheus, so it is off
    by default (SSE_METRICS_CHANNEL_LABELS=0) and capped when on: the first ``limit``
    channels a process sees keep their names for its lifetime, later ones count under
    ``_other``."""

    __slots__ = ("_named", "deliveries", "events", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._named: set[str] = set()
        self.deliveries: Counter[str] = Counter()
        """Entries written to streams, per label."""
        self.events: Counter[str] = Counter()
        """Entries received from Redis (handed out by a flush), per label."""

    def label(self, channel: str) -> str:
        """``channel`` itself while the cap allows, ``_other`` after."""
        named = self._named
        if channel in named:
            return channel
        if len(named) < self.limit:
            named.add(channel)
            return channel
        return OTHER_CHANNELS


class Metrics:
    """Every count of one gateway process; histograms only when ``timings`` is on."""

    __slots__ = (
        "bytes_written",
        "channels",
        "deliveries",
        "flush_time",
        "history_gaps",
        "history_pages",
        "open_time",
        "publish_latency",
        "resumes",
        "streams_closed",
        "streams_opened",
        "streams_refused",
    )

    def __init__(self, *, timings: bool = True, channel_labels: int = 0) -> None:
        self.deliveries = 0
        """Entries (and history_gap notices) written to streams."""
        self.bytes_written = 0
        """Body bytes written to streams: frames, pings, opening and closing hints."""
        self.streams_opened = 0
        self.streams_closed: Counter[str] = Counter(dict.fromkeys(CLOSE_REASONS, 0))
        self.streams_refused: Counter[str] = Counter()
        """``GET /sse`` answered with an error instead of a stream, by error code."""
        self.resumes: Counter[str] = Counter(dict.fromkeys(RESUME_STARTS, 0))
        self.history_pages: Counter[str] = Counter(dict.fromkeys(PAGE_SOURCES, 0))
        self.history_gaps: Counter[str] = Counter(dict.fromkeys(GAP_REASONS, 0))
        self.publish_latency = Buckets(LATENCY_BOUNDS) if timings else None
        """Seconds from an entry's id (its publication, Redis's clock) to the flush that
        hands it out (this process's clock)."""
        self.open_time = Buckets(LATENCY_BOUNDS) if timings else None
        """Seconds from a stream's request to its first byte."""
        self.flush_time = Buckets(FLUSH_BOUNDS) if timings else None
        self.channels = ChannelCounts(channel_labels) if channel_labels and timings else None
