"""A real browser (Debian's Chromium, driven by Playwright) as the SSE client.

The browser is the point: its own ``EventSource`` parses the frames, keeps
``lastEventId``, honours ``retry:`` and sends ``Last-Event-ID`` when it
reconnects after a gateway died or drained. The page is a gateway URL
(``/healthz``), so the stream is same-origin and needs no CORS.

Chromium is not optional: CI installs it (scripts/test), so a missing browser
fails these tests with a message instead of skipping them.
"""

from __future__ import annotations

import json
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from contract.wire import FIELD_DATA, Keyspace
from gateway.resume.cursor import parse_stream_id
from producers.publisher import Publisher
from tests.support.assertions import (
    assert_cursors_never_move_backwards,
    assert_exactly,
    cursor_positions,
    messages,
    numbered,
    publish_numbered,
)
from tests.support.browser import chromium
from tests.support.ports import free_port
from tests.support.processes import GatewayProcess

try:
    from playwright.async_api import Browser, Page, Request
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - reported by the fixture as a failure
    pass

# One Chromium for the whole module (a launch costs seconds): the tests and the browser
# fixtures share the module's event loop, each test gets a fresh browser context.
pytestmark = pytest.mark.asyncio(loop_scope="module")

BOTH = "/sse?channel=echo&channel=reverse_echo"
CHANNEL_EVENTS = ("echo", "reverse_echo")

# Installed in the page: one EventSource whose every event (type, data, lastEventId,
# and the number of the connection it came on) is recorded in window.sseLog.
OPEN_EVENT_SOURCE = """
(url) => {
  const log = { events: [], opens: 0, errors: 0 };
  window.sseLog = log;
  const source = new EventSource(url);
  window.sseSource = source;
  const types = ["echo", "reverse_echo", "history_gap", "cursor_invalid", "reconnect", "message"];
  for (const type of types) {
    source.addEventListener(type, (e) => {
      log.events.push({ type: e.type, data: e.data, id: e.lastEventId, connection: log.opens });
    });
  }
  source.onopen = () => { log.opens += 1; };
  source.onerror = () => { log.errors += 1; };
}
"""

COUNT_OF_TYPES = """
([types, n]) => window.sseLog.events.filter((e) => types.includes(e.type)).length >= n
"""


@dataclass(frozen=True)
class BrowserEvent:
    """One event as the page's EventSource dispatched it."""

    event: str
    data: str
    id: str | None
    connection: int


class BrowserStream:
    """The EventSource inside one page, and the /sse requests the page made."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[Request] = []
        page.on("request", self._on_request)

    def _on_request(self, request: Request) -> None:
        if "/sse?" in request.url:
            self.requests.append(request)

    async def open(self, base_url: str, path: str) -> None:
        response = await self.page.goto(f"{base_url}/healthz", timeout=10_000)
        assert response is not None
        assert response.ok, f"/healthz answered {response.status}"
        await self.page.evaluate(OPEN_EVENT_SOURCE, path)

    async def log(self) -> dict[str, Any]:
        log: dict[str, Any] = await self.page.evaluate("() => window.sseLog")
        return log

    async def events(self, types: tuple[str, ...] | None = None) -> list[BrowserEvent]:
        raw = (await self.log())["events"]
        return [
            BrowserEvent(e["type"], e["data"], e["id"] or None, e["connection"])
            for e in raw
            if types is None or e["type"] in types
        ]

    async def wait_until(self, expression: str, arg: Any, timeout: float, what: str) -> None:
        """Wait (bounded) for a JS predicate over window.sseLog; on timeout say what came."""
        try:
            await self.page.wait_for_function(expression, arg=arg, timeout=timeout * 1000)
        except PlaywrightTimeout:
            log = await self.log()
            summary = [(e["type"], e["data"][:60], e["id"]) for e in log["events"]][-15:]
            raise AssertionError(
                f"browser: {what} not within {timeout}s; opens={log['opens']} "
                f"errors={log['errors']} events={len(log['events'])}, last: {summary}"
            ) from None

    async def wait_for(
        self, count: int, types: tuple[str, ...] = CHANNEL_EVENTS, timeout: float = 10
    ) -> list[BrowserEvent]:
        await self.wait_until(COUNT_OF_TYPES, [list(types), count], timeout, f"{count} {types}")
        return await self.events(types)

    async def last_event_id_headers(self) -> list[str | None]:
        """The Last-Event-ID header of every /sse request a server answered, in order
        (None: not sent). Chromium adds the header below the page, so only a request
        that reached a server shows it: refused attempts are left out."""
        values = []
        for request in self.requests:
            if await request.response() is None:
                continue
            headers = await request.all_headers()
            values.append(headers.get("last-event-id"))
        return values


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()


def entry_id_in(event: BrowserEvent, channel: str) -> tuple[int, int]:
    assert event.id is not None
    return cursor_positions(event.id)[channel]


async def test_browser_receives_both_event_types_from_producer_processes(
    page: Page, gateway: GatewayProcess, producer_factory, redis_url: str
) -> None:
    stream = BrowserStream(page)
    await stream.open(gateway.base_url, BOTH)
    await stream.wait_until("() => window.sseLog.opens >= 1", None, 10, "the stream to open")
    producer_factory("echo", message="hello browser", interval=0.1)
    producer_factory("reverse-echo", message="hello browser", interval=0.1)
    await stream.wait_for(3, ("echo",))
    received = await stream.wait_for(3, ("reverse_echo",))

    keyspace = Keyspace()
    for name, expected_message in (("echo", "hello browser"), ("reverse_echo", "resworb olleh")):
        events = [e for e in received if e.event == name]
        # Not the redis_client fixture: it lives on a per-test loop, this test on the module one.
        async with Redis.from_url(redis_url) as redis:
            entries = await redis.xrange(keyspace.history_key(name))
        stored = {
            parse_stream_id(entry_id.decode()): fields[FIELD_DATA].decode()
            for entry_id, fields in entries
        }
        for event in events:
            payload = json.loads(event.data)
            assert set(payload) == {"message", "created_at"}, event.data
            assert payload["message"] == expected_message
            datetime.fromisoformat(payload["created_at"])
            # The bytes the producer wrote are the bytes the browser read.
            assert event.data == stored[entry_id_in(event, name)]
    for event in received:
        assert event.id is not None
        assert [part.partition("=")[0] for part in event.id.split(",")] == list(CHANNEL_EVENTS)
    assert_cursors_never_move_backwards(received)
    log = await stream.log()
    assert log["opens"] == 1
    assert log["errors"] == 0


async def test_browser_resumes_by_itself_after_the_gateway_is_killed(
    page: Page, gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    port = free_port()
    env = {"SSE_RETRY_MS": "300"}
    first = gateway_factory(port=port, env=env)
    stream = BrowserStream(page)
    await stream.open(first.base_url, f"{BOTH}&last_event_id=earliest")
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", range(5))
        await publish_numbered(publisher, "reverse_echo", range(5), reverse=True)
        before = await stream.wait_for(10)
        last_id_before_kill = before[-1].id

        first.signal(signal.SIGKILL)
        first.wait(timeout=10)
        await stream.wait_until(
            "() => window.sseLog.errors >= 1", None, 10, "an error event after SIGKILL"
        )
        await publish_numbered(publisher, "echo", range(5, 10))
        await publish_numbered(publisher, "reverse_echo", range(5, 10), reverse=True)

        gateway_factory(port=port, env=env)
        await publish_numbered(publisher, "echo", range(10, 12))
        everything = await stream.wait_for(22, timeout=15)

    assert_exactly(messages(everything, "echo"), numbered(12))
    assert_exactly(messages(everything, "reverse_echo"), numbered(10))
    assert_cursors_never_move_backwards(everything)
    assert all(e.connection == 1 for e in everything[:10])
    assert all(e.connection >= 2 for e in everything[10:])
    # The browser resumed on its own, sending the id of the last event it had seen.
    headers = await stream.last_event_id_headers()
    assert headers[0] is None, "the first connection cannot send Last-Event-ID"
    assert len(headers) >= 2
    assert set(headers[1:]) == {last_id_before_kill}, headers


async def test_browser_reconnects_after_a_graceful_drain_and_loses_nothing(
    page: Page, gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    port = free_port()
    # A base retry of a minute: only the short hint sent with the drain brings the browser
    # back within the test's wait, so this also checks that Chromium honours it.
    env = {"SSE_RETRY_MS": "60000", "SSE_SHUTDOWN_RETRY_MS": "200"}
    first = gateway_factory(port=port, env=env)
    stream = BrowserStream(page)
    await stream.open(first.base_url, f"{BOTH}&last_event_id=earliest")
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", range(4))
        await publish_numbered(publisher, "reverse_echo", range(4), reverse=True)
        before = await stream.wait_for(8)

        first.signal(signal.SIGTERM)
        notices = await stream.wait_for(1, ("reconnect",))
        # uvicorn re-raises the signal it caught once it has shut down cleanly.
        assert first.wait(timeout=15) in (0, -signal.SIGTERM), first.log()
        await publish_numbered(publisher, "echo", range(4, 8))
        await publish_numbered(publisher, "reverse_echo", range(4, 8), reverse=True)

        gateway_factory(port=port, env=env)
        await publish_numbered(publisher, "reverse_echo", range(8, 10), reverse=True)
        everything = await stream.wait_for(18, timeout=15)

    reconnect = notices[0]
    assert json.loads(reconnect.data) == {"reason": "shutdown", "retry_ms": 200}
    assert reconnect.id == before[-1].id, "the reconnect notice carries the unchanged cursor"
    assert reconnect.connection == 1
    assert_exactly(messages(everything, "echo"), numbered(8))
    assert_exactly(messages(everything, "reverse_echo"), numbered(10))
    assert_cursors_never_move_backwards(everything)
    assert all(e.connection >= 2 for e in everything[8:])
    headers = await stream.last_event_id_headers()
    assert headers[0] is None
    assert set(headers[1:]) == {before[-1].id}, headers


async def test_browser_first_connection_from_earliest_replays_history(
    page: Page, gateway: GatewayProcess, redis_url: str
) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        echo_ids = await publish_numbered(publisher, "echo", range(5))
        reverse_ids = await publish_numbered(publisher, "reverse_echo", range(3), reverse=True)
        stream = BrowserStream(page)
        await stream.open(gateway.base_url, f"{BOTH}&last_event_id=earliest")
        replayed = await stream.wait_for(8)
        echo_ids += await publish_numbered(publisher, "echo", range(5, 7))
        everything = await stream.wait_for(10)

    assert replayed[:8] == everything[:8]
    assert_exactly(messages(everything, "echo"), numbered(7))
    assert_exactly(messages(everything, "reverse_echo"), numbered(3))
    assert_cursors_never_move_backwards(everything)
    # Each event's cursor names its own entry for its channel.
    for name, ids in (("echo", echo_ids), ("reverse_echo", reverse_ids)):
        events = [e for e in everything if e.event == name]
        assert [entry_id_in(e, name) for e in events] == [parse_stream_id(i) for i in ids]
    assert everything[-1].id == f"echo={echo_ids[-1]},reverse_echo={reverse_ids[-1]}"
    log = await stream.log()
    assert (log["opens"], log["errors"]) == (1, 0)
    assert await stream.last_event_id_headers() == [None]
