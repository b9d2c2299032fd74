"""HTTP/2 in front: one browser page holds more SSE streams than HTTP/1.1 lets it.

Over HTTP/1.1 a browser opens at most 6 connections to a host, and every open
EventSource holds one. The shipped nginx config (deploy/nginx/nginx.conf) also listens
with TLS and HTTP/2, where all of a page's streams share one connection. Through a real
nginx (certificate made by the shipped script) in front of two gateways, Debian's
Chromium opens 10 EventSources in one page: over HTTP/2 all 10 stream, and resume
exactly through a restart of each gateway, and of both at once; over HTTP/1.1 only 6 of
them ever open.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from producers.publisher import Publisher
from tests.support.assertions import (
    assert_cursors_never_move_backwards,
    assert_exactly,
    numbered,
    publish_numbered,
)
from tests.support.browser import chromium
from tests.support.nginx import NginxProcess
from tests.support.ports import free_port
from tests.support.processes import GatewayProcess

try:
    from playwright.async_api import Browser, Page
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - reported by chromium() as a failure
    pass

pytestmark = pytest.mark.asyncio(loop_scope="module")

SOURCES = 10
HTTP1_CONNECTIONS_PER_HOST = 6
STREAM = "/sse?channel=echo&last_event_id=earliest"
GATEWAY_ENV = {"SSE_RETRY_MS": "300"}

# Installed in the page: SOURCES EventSources on one URL; each records its echo events
# (data, lastEventId, the number of the connection it came on), opens and errors.
OPEN_SOURCES = """
([path, count]) => {
  window.sources = [];
  for (let i = 0; i < count; i++) {
    const log = { events: [], opens: 0, errors: 0 };
    const source = new EventSource(path);
    source.addEventListener("echo", (e) => {
      log.events.push({ data: e.data, id: e.lastEventId, connection: log.opens });
    });
    source.onopen = () => { log.opens += 1; };
    source.onerror = () => { log.errors += 1; };
    window.sources.push(log);
  }
}
"""
NEXT_HOP_PROTOCOL = "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium("--ignore-certificate-errors") as launched:  # the cert is self-signed
        yield launched


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()


class Sources:
    """The page's EventSources, read back from ``window.sources``."""

    def __init__(self, page: Page) -> None:
        self.page = page

    async def open(self, origin: str) -> str:
        """Load a page of ``origin`` (through nginx), open the sources; return the protocol
        the page was loaded with (``h2`` or ``http/1.1``)."""
        response = await self.page.goto(f"{origin}/healthz", timeout=10_000)
        assert response is not None
        assert response.ok
        protocol: str = await self.page.evaluate(NEXT_HOP_PROTOCOL)
        await self.page.evaluate(OPEN_SOURCES, [STREAM, SOURCES])
        return protocol

    async def logs(self) -> list[dict[str, Any]]:
        logs: list[dict[str, Any]] = await self.page.evaluate("() => window.sources")
        return logs

    async def wait_until(self, predicate: str, arg: Any, what: str, timeout: float = 20) -> None:
        try:
            await self.page.wait_for_function(predicate, arg=arg, timeout=timeout * 1000)
        except PlaywrightTimeout:
            summary = [(s["opens"], s["errors"], len(s["events"])) for s in await self.logs()]
            raise AssertionError(
                f"browser: {what} not within {timeout}s; (opens, errors, events) per source:"
                f" {summary}"
            ) from None

    async def wait_for_events(self, count: int) -> None:
        await self.wait_until(
            "(n) => window.sources.every((s) => s.events.length >= n)",
            count,
            f"{count} events on every source",
        )


async def stream_counts(gateways: list[GatewayProcess]) -> list[int]:
    return list(await asyncio.gather(*(asyncio.to_thread(g.open_streams) for g in gateways)))


async def wait_for_streams(gateways: list[GatewayProcess], total: int) -> list[int]:
    deadline = time.monotonic() + 20
    while sum(counts := await stream_counts(gateways)) != total:
        assert time.monotonic() < deadline, f"open streams per gateway: {counts}, want {total}"
        await asyncio.sleep(0.05)
    return counts


@pytest.fixture
def two_gateways_behind_nginx(
    gateway_factory: Callable[..., GatewayProcess],
    nginx_factory: Callable[[list[str]], NginxProcess],
) -> tuple[list[GatewayProcess], NginxProcess]:
    gateways = [gateway_factory(port=free_port(), env=GATEWAY_ENV) for _ in range(2)]
    return gateways, nginx_factory([f"127.0.0.1:{g.port}" for g in gateways])


async def test_over_http2_one_page_streams_on_ten_event_sources_and_resumes_through_restarts(
    page: Page,
    two_gateways_behind_nginx: tuple[list[GatewayProcess], NginxProcess],
    gateway_factory: Callable[..., GatewayProcess],
    redis_url: str,
) -> None:
    gateways, nginx = two_gateways_behind_nginx
    sources = Sources(page)
    assert await sources.open(nginx.https_url) == "h2"
    await sources.wait_until(
        "() => window.sources.every((s) => s.opens >= 1)", None, "every source to open"
    )
    await wait_for_streams(gateways, SOURCES)  # all ten at once: more than HTTP/1.1 allows

    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", range(5))
        await sources.wait_for_events(5)
        # The streams of each gateway in turn lose it (SIGKILL) and resume, through nginx,
        # on the other one; the gateway comes back on its port.
        for index, first in ((0, 5), (1, 10)):
            gateways[index].signal(signal.SIGKILL)
            await asyncio.to_thread(gateways[index].wait, 10)
            await publish_numbered(publisher, "echo", range(first, first + 5))
            await sources.wait_for_events(first + 5)
            gateways[index] = await asyncio.to_thread(
                gateway_factory, port=gateways[index].port, env=GATEWAY_ENV
            )
        await publish_numbered(publisher, "echo", range(15, 20))
        await sources.wait_for_events(20)
        # Both at once: nginx has no gateway to offer and answers with a retry hint (a 502
        # would end every EventSource for good); they come back when one gateway does.
        errors_before = sum(log["errors"] for log in await sources.logs())
        for gateway in gateways:
            gateway.signal(signal.SIGKILL)
            await asyncio.to_thread(gateway.wait, 10)
        await publish_numbered(publisher, "echo", range(20, 25))
        await sources.wait_until(
            "(n) => window.sources.reduce((sum, s) => sum + s.errors, 0) >= n",
            errors_before + 2 * SOURCES,
            "every source to be turned away twice while no gateway runs",
        )
        gateways[0] = await asyncio.to_thread(
            gateway_factory, port=gateways[0].port, env=GATEWAY_ENV
        )
        await sources.wait_for_events(25)

    logs = await sources.logs()
    for log in logs:
        assert_exactly([json.loads(e["data"])["message"] for e in log["events"]], numbered(25))
        assert_cursors_never_move_backwards(
            [_Event(e["id"]) for e in log["events"]]  # every id is this channel's cursor
        )
    # The second kill took every stream's gateway (all were on it by then): all resumed.
    assert all(log["opens"] >= 3 for log in logs), [log["opens"] for log in logs]
    assert await asyncio.to_thread(gateways[0].open_streams) == SOURCES


async def test_over_http1_the_same_page_gets_six_streams_and_the_rest_wait(
    page: Page, two_gateways_behind_nginx: tuple[list[GatewayProcess], NginxProcess], redis_url: str
) -> None:
    """Why HTTP/2 matters: the plain listener serves the same page, and four of its ten
    EventSources never get a connection while the six others are open."""
    gateways, nginx = two_gateways_behind_nginx
    sources = Sources(page)
    assert await sources.open(nginx.base_url) == "http/1.1"
    await sources.wait_until(
        "(n) => window.sources.filter((s) => s.opens >= 1).length >= n",
        HTTP1_CONNECTIONS_PER_HOST,
        f"{HTTP1_CONNECTIONS_PER_HOST} sources to open",
    )
    await wait_for_streams(gateways, HTTP1_CONNECTIONS_PER_HOST)
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", range(1))
    await sources.wait_until(
        "(n) => window.sources.filter((s) => s.events.length >= 1).length >= n",
        HTTP1_CONNECTIONS_PER_HOST,
        "the open sources to get the event",
    )
    # Those six streams are open and have delivered: the other four are still queued
    # behind them in the browser, not merely slow.
    logs = await sources.logs()
    assert sorted(len(log["events"]) for log in logs) == [0] * 4 + [1] * 6
    assert sorted(log["opens"] for log in logs) == [0] * 4 + [1] * 6
    assert sum(await stream_counts(gateways)) == HTTP1_CONNECTIONS_PER_HOST


class _Event:
    """The shape assert_cursors_never_move_backwards reads."""

    def __init__(self, cursor: str) -> None:
        self.id = cursor
        self.event = "echo"
        self.data = ""
