"""Streams and refusals leave no reference cycles: their objects go when they end.

A reference cycle per stream would be collected only by the cyclic collector, whose
full collections walk every open stream (~0.5 s at 15,000): the memory of closed
streams would linger and each such collection would stall every stream. The gateway
runs with its automatic collections off and a hook (``sitecustomize``) that collects on
a signal and reports how many objects were found in cycles: streams of every kind and
refused requests must not leave any.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from producers.publisher import Publisher
from tests.support.assertions import publish_numbered
from tests.support.paths import ALL_PATHS, StreamPath
from tests.support.processes import GatewayProcess
from tests.support.sse import sse_connect

COUNT_CYCLES = """
import gc, signal

# No automatic collections: every reference cycle made from now on lives until the next
# report, which counts and frees what it finds.
gc.disable()

def _report(signum, frame):
    found = gc.collect()
    with open({out!r}, "a") as out:
        out.write(f"{{found}}\\n")

signal.signal(signal.SIGUSR1, _report)
"""

ROUNDS = 20
"""Rounds of every kind of request. A cycle is at least two objects: one per request
left behind would add up to twice the number of requests or more."""


@pytest.fixture(params=ALL_PATHS, ids=lambda path: path.name)
def stream_path(request: pytest.FixtureRequest) -> StreamPath:
    return request.param  # type: ignore[no-any-return]


def reports(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


async def cycles_since_last_report(gateway: GatewayProcess, out: Path) -> int:
    before = len(reports(out))
    os.kill(gateway.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lines = reports(out)
        if len(lines) > before:
            return int(lines[-1])
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not report what it collected")


async def wait_until_no_streams(gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + 20
    while gateway.stats()["streams"]["open"]:
        assert time.monotonic() < deadline, gateway.stats()
        await asyncio.sleep(0.05)


async def every_kind_of_request(gateway: GatewayProcess, publisher: Publisher, i: int) -> None:
    """One stream of each kind, each refusal, and a plain request."""
    base = gateway.base_url
    async with sse_connect(base, ["echo"]) as stream:
        await publish_numbered(publisher, "echo", [i])
        await stream.take(1, timeout=10)
    async with sse_connect(base, ["echo", f"room-{i % 3}"]):
        pass
    async with sse_connect(base, ["echo"], last_event_id="echo=0-0") as stream:
        await stream.take(1, timeout=10)  # a replay of history
    async with sse_connect(base, ["echo"], last_event_id="not a cursor"):
        pass
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await client.get("/sse")).status_code == 400
        assert (await client.get("/sse?channel=no%20spaces")).status_code == 400
        assert (await client.get("/healthz")).status_code == 200


async def test_streams_and_refusals_leave_no_cyclic_garbage(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "collected.txt"
    (tmp_path / "sitecustomize.py").write_text(COUNT_CYCLES.format(out=str(out)))
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    gateway = gateway_factory(env={"PYTHONPATH": path})
    async with Publisher.from_url(redis_url) as publisher:
        # First requests create what lives as long as the process (caches, a shutdown
        # watcher, the history reader's pools): counted before, not against, the streams.
        for i in range(3):
            await every_kind_of_request(gateway, publisher, i)
        await wait_until_no_streams(gateway)
        await cycles_since_last_report(gateway, out)
        for i in range(ROUNDS):
            await every_kind_of_request(gateway, publisher, i)
        await wait_until_no_streams(gateway)
    found = await cycles_since_last_report(gateway, out)
    requests = ROUNDS * 7
    assert found < requests, f"{found} objects in reference cycles after {requests} requests"
