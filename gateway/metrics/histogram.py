"""Histograms kept as plain bucket counts, cheap enough for every entry of a flush."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence


class Buckets:
    """Observations counted per bucket (Prometheus's ``le`` upper bounds), and their sum.

    ``observe`` is a bisect and two additions, with no lock and no file write: the
    fan-out's flush calls it for every entry it hands out. The Prometheus export
    (``gateway.metrics.prometheus``) adds what was observed since its last look into
    a prometheus-client histogram.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError(f"bucket bounds must be increasing and distinct: {bounds}")
        self.bounds = tuple(float(bound) for bound in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        """Observations per bucket, not cumulative; the last one is ``+Inf``."""
        self.total = 0.0
        """The sum of every observation."""

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)


LATENCY_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds from an entry's publication to its flush, and from a request to its first byte."""

FLUSH_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
"""Seconds one fan-out flush takes: rendering once, then a write per stream."""
