"""``GET /metrics``: the counts of ``Metrics`` and the gauges of the gateway, for Prometheus.

The hot paths never call prometheus-client: they add to plain integers and bucket
counts (``Metrics``). ``PrometheusExport.sync`` copies what they added since its
last look into prometheus-client's instruments, and reads the gauges from their
owners (``Sample``), right before every scrape and, under ``--workers N``, once a
second, so that whichever worker answers a scrape reports all of them.

With ``--workers N`` the instruments live in prometheus-client's multiprocess mode:
each worker writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` (made and
cleaned by ``python -m gateway``), and a scrape merges every worker's files.
Counters add up over workers, including workers that have exited; gauges carry a
``pid`` label per live worker (``sum`` them for the process group). A worker
removes its gauges when it stops, and a scrape removes those of workers that died
without stopping (SIGKILL). With one worker the instruments live in memory.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from gateway.metrics.counts import Metrics
from gateway.metrics.histogram import Buckets

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

SYNC_INTERVAL = 1.0
"""Seconds between two copies of a worker's numbers to its files (``--workers N`` only):
how stale another worker's figures may be in a scrape."""

_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


class NodeSample(Protocol):
    """A Redis node's pub/sub connection, as the broker reports it (``NodeStats``)."""

    @property
    def node(self) -> str: ...
    @property
    def connected(self) -> bool: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def messages(self) -> int: ...
    @property
    def malformed_skipped(self) -> int: ...


@dataclass(frozen=True)
class Sample:
    """The gauges of a process (and the broker's own counters), read at export time."""

    streams_open: int
    channels: int
    """Channels with a live subscription."""
    grouped: int
    """Subscriptions (a stream on a channel) written by a fan-out group's flush."""
    own: int
    """Subscriptions on their stream's own task: replaying, lagging, or about to join."""
    groups: int
    draining: bool
    nodes: Sequence[NodeSample]
    channel_streams: Mapping[str, int] = field(default_factory=dict)
    """Streams per channel, when channel labels are on."""


class PrometheusExport:
    """prometheus-client instruments kept up to date with one process's ``Metrics``."""

    def __init__(
        self,
        metrics: Metrics,
        sample: Callable[[], Sample],
        *,
        multiprocess_dir: str | None = None,
    ) -> None:
        if multiprocess_dir is not None and values.ValueClass is values.MutexValue:
            # prometheus-client picks where values live when it is first imported.
            raise RuntimeError(
                "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported; "
                "set it before the process starts (python -m gateway does)"
            )
        # The *_created series double the exposition for a start time Prometheus does not
        # need (and multiprocess mode never has them): prometheus-client's own switch.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self._metrics = metrics
        self._sample = sample
        self._dir = multiprocess_dir
        self._registry = None if multiprocess_dir is not None else CollectorRegistry()
        self._seen: dict[tuple[int, tuple[str, ...]], float] = {}
        self._seen_buckets: dict[int, tuple[list[int], float]] = {}
        self._define()

    # -- the instruments -----------------------------------------------------------

    def _counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, doc, labelnames=labels, registry=self._registry)

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        # liveall: one series per live worker (a pid label); dashboards sum them.
        return Gauge(
            name, doc, labelnames=labels, registry=self._registry, multiprocess_mode="liveall"
        )

    def _histogram(self, name: str, doc: str, buckets: Buckets) -> Histogram:
        histogram = Histogram(name, doc, buckets=buckets.bounds, registry=self._registry)
        # Observations are added in bulk (see _add_observations), to these two attributes.
        inner: Any = histogram
        if len(getattr(inner, "_buckets", ())) != len(buckets.counts) or not hasattr(inner, "_sum"):
            raise RuntimeError(
                "this prometheus-client keeps histograms differently from the versions "
                "gateway.metrics was written for (see pyproject.toml)"
            )
        return histogram

    def _define(self) -> None:
        counter, gauge = self._counter, self._gauge
        self.streams_open = gauge("sse_gateway_streams_open", "Open SSE streams.")
        self.channels = gauge(
            "sse_gateway_channels_subscribed", "Channels with a live Redis subscription."
        )
        self.subscriptions = gauge(
            "sse_gateway_subscriptions",
            "Streams x channels: grouped (in step, written by a fan-out group) or own "
            "(on the stream's task: replaying history, lagging, or about to join).",
            ["state"],
        )
        self.groups = gauge("sse_gateway_fanout_groups", "Fan-out groups of streams in step.")
        self.draining = gauge("sse_gateway_draining", "1 while the process drains (shutdown).")
        self.redis_connected = gauge(
            "sse_gateway_redis_connected", "1 while the pub/sub connection is up.", ["node"]
        )
        self.redis_messages = counter(
            "sse_gateway_redis_messages", "Live messages received from Redis.", ["node"]
        )
        self.redis_malformed = counter(
            "sse_gateway_redis_malformed", "Live messages skipped as malformed.", ["node"]
        )
        self.redis_reconnects = counter(
            "sse_gateway_redis_reconnects", "Pub/sub connections lost (then re-made).", ["node"]
        )
        self.streams_opened = counter("sse_gateway_streams_opened", "SSE streams opened.")
        self.streams_closed = counter(
            "sse_gateway_streams_closed", "SSE streams closed, by reason.", ["reason"]
        )
        self.streams_refused = counter(
            "sse_gateway_streams_refused",
            "Requests for a stream answered with an error, by error code.",
            ["code"],
        )
        self.resumes = counter(
            "sse_gateway_resumes",
            "Streams that did not start live: from a cursor, from the earliest entry, or "
            "live after an unreadable cursor (cursor_invalid).",
            ["start"],
        )
        self.deliveries = counter(
            "sse_gateway_deliveries", "Events (and history_gap notices) written to streams."
        )
        self.sent_bytes = counter(
            "sse_gateway_sent_bytes", "Body bytes written to streams (frames, pings, hints)."
        )
        self.history_pages = counter(
            "sse_gateway_history_pages",
            "History pages read for streams, by source: redis, cache, or shared "
            "(a read in flight for another stream).",
            ["source"],
        )
        self.history_gaps = counter(
            "sse_gateway_history_gaps",
            "history_gap notices sent: trimmed (retention) or lost (history reset).",
            ["reason"],
        )
        metrics = self._metrics
        self.latency = self.open_time = self.flush_time = None
        if metrics.publish_latency is not None:
            self.latency = self._histogram(
                "sse_gateway_publish_latency_seconds",
                "From an entry's publication (its id's time, Redis's clock) to the flush "
                "that hands it to streams.",
                metrics.publish_latency,
            )
        if metrics.open_time is not None:
            self.open_time = self._histogram(
                "sse_gateway_stream_open_seconds",
                "From a stream's request to its first byte.",
                metrics.open_time,
            )
        if metrics.flush_time is not None:
            self.flush_time = self._histogram(
                "sse_gateway_flush_seconds", "Duration of one fan-out flush.", metrics.flush_time
            )
        self.per_channel: tuple[Counter, Counter, Gauge] | None = None
        if metrics.channels is not None:
            self.per_channel = (
                counter(
                    "sse_gateway_channel_deliveries",
                    "Events written to streams, per channel.",
                    ["channel"],
                ),
                counter(
                    "sse_gateway_channel_events",
                    "Events received from Redis, per channel.",
                    ["channel"],
                ),
                gauge(
                    "sse_gateway_channel_streams", "Streams subscribed, per channel.", ["channel"]
                ),
            )

    # -- copying -------------------------------------------------------------------

    def sync(self) -> None:
        """Bring every instrument up to date with the counts and the gauges now."""
        metrics, sample = self._metrics, self._sample()
        self.streams_open.set(sample.streams_open)
        self.channels.set(sample.channels)
        self.subscriptions.labels("grouped").set(sample.grouped)
        self.subscriptions.labels("own").set(sample.own)
        self.groups.set(sample.groups)
        self.draining.set(1 if sample.draining else 0)
        for node in sample.nodes:
            self.redis_connected.labels(node.node).set(1 if node.connected else 0)
            self._add(self.redis_messages, node.messages, node.node)
            self._add(self.redis_malformed, node.malformed_skipped, node.node)
            self._add(self.redis_reconnects, node.reconnects, node.node)
        self._add(self.streams_opened, metrics.streams_opened)
        self._add_each(self.streams_closed, metrics.streams_closed)
        self._add_each(self.streams_refused, metrics.streams_refused)
        self._add_each(self.resumes, metrics.resumes)
        self._add(self.deliveries, metrics.deliveries)
        self._add(self.sent_bytes, metrics.bytes_written)
        self._add_each(self.history_pages, metrics.history_pages)
        self._add_each(self.history_gaps, metrics.history_gaps)
        for histogram, buckets in (
            (self.latency, metrics.publish_latency),
            (self.open_time, metrics.open_time),
            (self.flush_time, metrics.flush_time),
        ):
            if histogram is not None and buckets is not None:
                self._add_observations(histogram, buckets)
        channels = metrics.channels
        if channels is not None and self.per_channel is not None:
            deliveries, events, streams = self.per_channel
            self._add_each(deliveries, channels.deliveries)
            self._add_each(events, channels.events)
            per_label: dict[str, int] = {}
            for channel, count in sample.channel_streams.items():
                label = channels.label(channel)
                per_label[label] = per_label.get(label, 0) + count
            for label in channels.deliveries.keys() | per_label.keys():
                streams.labels(label).set(per_label.get(label, 0))

    def _add(self, counter: Counter, value: float, *labels: str) -> None:
        """Add to ``counter`` what ``value`` grew by since the last sync."""
        child = counter.labels(*labels) if labels else counter
        key = (id(counter), labels)
        grown = value - self._seen.get(key, 0)
        if grown:
            child.inc(grown)
            self._seen[key] = value

    def _add_each(self, counter: Counter, counts: Mapping[str, int]) -> None:
        for label, value in list(counts.items()):
            self._add(counter, value, label)

    def _add_observations(self, histogram: Histogram, buckets: Buckets) -> None:
        """Add the observations made since the last sync into ``histogram``, in bulk.

        prometheus-client has no bulk observe; its histogram keeps a value per bucket
        (not cumulative) and one for the sum, which is what ``Buckets`` keeps too."""
        seen_counts, seen_total = self._seen_buckets.get(
            id(histogram), ([0] * len(buckets.counts), 0.0)
        )
        counts, total = list(buckets.counts), buckets.total
        inner: Any = histogram
        for value, bucket, seen in zip(counts, inner._buckets, seen_counts, strict=True):
            if value > seen:
                bucket.inc(value - seen)
        if total != seen_total:
            inner._sum.inc(total - seen_total)
        self._seen_buckets[id(histogram)] = (counts, total)

    # -- scraping ------------------------------------------------------------------

    async def scrape(self) -> bytes:
        """The exposition of every worker's metrics, this one's brought up to date first."""
        self.sync()
        if self._registry is not None:
            return generate_latest(self._registry)
        # Reading every worker's files is file IO: off the event loop.
        return await asyncio.to_thread(self._collect_workers)

    def _collect_workers(self) -> bytes:
        assert self._dir is not None
        forget_dead_workers(self._dir)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self._dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    async def keep_synced(self, interval: float = SYNC_INTERVAL) -> None:
        """Copy this worker's numbers to its files every ``interval`` (multiprocess mode)."""
        if self._dir is None:
            return  # one process: every scrape syncs, nothing else reads the values
        while True:
            await asyncio.sleep(interval)
            self.sync()

    def close(self) -> None:
        """Last copy of the counters; this worker's gauges leave the exposition."""
        self.sync()
        if self._dir is not None:
            mark_process_dead(os.getpid(), self._dir)  # type: ignore[no-untyped-call]


def forget_dead_workers(path: str) -> None:
    """Remove the gauges of workers that are gone without stopping (killed)."""
    for pid in _live_gauge_pids(Path(path).iterdir()):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, under another user


def _live_gauge_pids(files: Iterable[Path]) -> set[int]:
    pids = set()
    for file in files:
        match = _LIVE_GAUGE_FILE.fullmatch(file.name)
        if match is not None:
            pids.add(int(match[1]))
    return pids
