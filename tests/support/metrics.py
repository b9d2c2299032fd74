"""Reading a gateway's ``/metrics`` the way Prometheus does: prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.processes import GatewayProcess


@dataclass
class Exposition:
    """One scrape, parsed."""

    samples: list[Sample]

    @property
    def names(self) -> set[str]:
        """Every sample name (``sse_gateway_deliveries_total``, ``..._bucket``...)."""
        return {sample.name for sample in self.samples}

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels``
        (over workers, for a gauge with a ``pid`` label per worker)."""
        matching = [
            sample.value
            for sample in self.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        ]
        assert matching, f"no sample {name}{labels or ''} in the exposition"
        return sum(matching)

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


def parse(text: str) -> Exposition:
    return Exposition(
        [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    )


def scrape(gateway: GatewayProcess) -> Exposition:
    """``GET /metrics`` on a new connection (under --workers N, any worker may answer)."""
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{gateway.base_url}/metrics", headers={"Connection": "close"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def wait_for_metrics(
    gateway: GatewayProcess, until: Callable[[Exposition], bool], timeout: float = 60
) -> Exposition:
    """Scrape until ``until`` holds (another worker's figures arrive within a second; a
    worker the supervisor replaces may take 20 s to start on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        exposition = await asyncio.to_thread(scrape, gateway)
        if until(exposition):
            return exposition
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never reached the expected state: {exposition!s:.4000}")
        await asyncio.sleep(0.1)
