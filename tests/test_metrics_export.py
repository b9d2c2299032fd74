"""The Prometheus export in one process: copied counts equal what prometheus-client counts.

The hot paths count in plain Python and the export adds the difference into
prometheus-client's instruments on every sync, histograms in bulk. Here the same
observations go to a plain prometheus-client histogram (``observe``, one by one)
and through ``Buckets`` and the export: the two expositions must agree.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gateway.metrics import Metrics
from gateway.metrics.histogram import LATENCY_BOUNDS
from gateway.metrics.prometheus import PrometheusExport, Sample
from tests.support.metrics import parse

OBSERVATIONS = [0.0, 0.0004, 0.001, 0.0011, 0.003, 0.01, 0.2, 0.2, 2.5, 7.0, 11.0, 300.0]


def idle_sample() -> Sample:
    return Sample(streams_open=0, channels=0, grouped=0, own=0, groups=0, draining=False, nodes=())


def reference_buckets(values: list[float]) -> dict[str, float]:
    registry = CollectorRegistry()
    histogram = Histogram(
        "sse_gateway_publish_latency_seconds", "reference", buckets=LATENCY_BOUNDS,
        registry=registry,
    )  # fmt: skip
    for value in values:
        histogram.observe(value)
    exposition = parse(generate_latest(registry).decode())
    return {
        f"{s.name}{s.labels}": s.value
        for s in exposition.samples
        if s.name.startswith("sse_gateway_publish_latency_seconds_") and "created" not in s.name
    }


async def exported_buckets(export: PrometheusExport) -> dict[str, float]:
    exposition = parse(await export_text(export))
    return {
        f"{s.name}{s.labels}": s.value
        for s in exposition.samples
        if s.name.startswith("sse_gateway_publish_latency_seconds_")
    }


async def export_text(export: PrometheusExport) -> str:
    return (await export.scrape()).decode()


async def test_bulk_added_observations_equal_observing_one_by_one() -> None:
    metrics = Metrics()
    export = PrometheusExport(metrics, idle_sample)
    latency = metrics.publish_latency
    assert latency is not None
    for value in OBSERVATIONS[:5]:
        latency.observe(value)
    assert await exported_buckets(export) == reference_buckets(OBSERVATIONS[:5])
    for value in OBSERVATIONS[5:]:  # a second sync adds only what is new
        latency.observe(value)
    assert await exported_buckets(export) == reference_buckets(OBSERVATIONS)
    assert await exported_buckets(export) == reference_buckets(
        OBSERVATIONS
    )  # nothing new: no change


async def test_counters_follow_the_counts_and_labels_show_from_zero() -> None:
    metrics = Metrics()
    export = PrometheusExport(metrics, idle_sample)
    first = parse(await export_text(export))
    assert first.value("sse_gateway_streams_closed_total", reason="slow_consumer") == 0
    assert first.value("sse_gateway_deliveries_total") == 0
    metrics.deliveries += 2000
    metrics.streams_closed["slow_consumer"] += 3
    metrics.streams_refused["too_many_streams"] += 1
    second = parse(await export_text(export))
    assert second.value("sse_gateway_deliveries_total") == 2000
    assert second.value("sse_gateway_streams_closed_total", reason="slow_consumer") == 3
    assert second.value("sse_gateway_streams_refused_total", code="too_many_streams") == 1


async def test_with_timings_off_there_are_no_histograms() -> None:
    metrics = Metrics(timings=False)
    export = PrometheusExport(metrics, idle_sample)
    names = parse(await export_text(export)).names
    assert "sse_gateway_deliveries_total" in names
    assert not {name for name in names if name.endswith("_bucket")}
