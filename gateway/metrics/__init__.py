"""Counting the gateway's own work, and exporting it to Prometheus.

``Metrics`` (plain integers and bucket counts, what the hot paths touch) is all
that the rest of the gateway imports from here at module level. The Prometheus
export (``gateway.metrics.prometheus``) is made by the runtime, and the
multiprocess directory of ``--workers N`` is managed by the CLI
(``gateway.metrics.multiprocess``).
"""

from gateway.metrics.counts import (
    CLOSE_REASONS,
    GAP_REASONS,
    OTHER_CHANNELS,
    PAGE_SOURCES,
    RESUME_STARTS,
    ChannelCounts,
    Metrics,
)
from gateway.metrics.histogram import Buckets

__all__ = [
    "CLOSE_REASONS",
    "GAP_REASONS",
    "OTHER_CHANNELS",
    "PAGE_SOURCES",
    "RESUME_STARTS",
    "Buckets",
    "ChannelCounts",
    "Metrics",
]
