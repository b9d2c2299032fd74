"""The demo page at ``GET /`` in a real browser (Debian's Chromium, driven by Playwright).

The page is plain HTML and JavaScript served by the gateway; its ``EventSource`` is
the browser's own, so the resume after a gateway crash is Chromium's. These tests
read what the page shows (its rows, state and counters), as a user would.

``SSE_UPDATE_SCREENSHOTS=1`` also writes the screenshot the README shows
(docs/demo-page.png).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from producers.publisher import Publisher
from tests.support.assertions import (
    assert_cursors_never_move_backwards,
    assert_exactly,
    messages,
    numbered,
    publish_numbered,
)
from tests.support.browser import chromium
from tests.support.ports import free_port
from tests.support.processes import ROOT, GatewayProcess

try:
    from playwright.async_api import Browser, Page
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - tests.support.browser fails the tests then
    pass

pytestmark = pytest.mark.asyncio(loop_scope="module")

BOTH = "/?channel=echo&channel=reverse_echo&last_event_id=earliest"
SCREENSHOT = ROOT / "docs" / "demo-page.png"

# What the page shows, oldest first: its rows, state and counters.
READ_PAGE = """
() => ({
  state: document.querySelector("#state").dataset.state,
  stateText: document.querySelector("#state").textContent,
  cursor: document.querySelector("#cursor").textContent,
  opens: document.querySelector("#opens").textContent,
  reconnects: document.querySelector("#reconnects").textContent,
  problem: document.querySelector("#problem").hidden ? null
    : document.querySelector("#problem").textContent,
  channels: [...document.querySelectorAll("#channels li")].map((li) => li.dataset.channel),
  rows: [...document.querySelectorAll("#rows tr")].reverse().map((tr) => ({
    kind: tr.className,
    event: tr.dataset.event,
    connection: Number(tr.dataset.connection),
    id: tr.cells[4].textContent,
    data: tr.cells[5].textContent,
  })),
})
"""
ROWS_OF_KIND = """
([kind, n]) => document.querySelectorAll(`#rows tr.${kind}`).length >= n
"""
STATE_IS = """(state) => document.querySelector("#state").dataset.state === state"""


class Row:
    """One row of the page's table, shaped like the SSE events the assertions take."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.kind: str = raw["kind"]
        self.event: str = raw["event"]
        self.connection: int = raw["connection"]
        self.id: str | None = raw["id"] or None
        self.data: str = raw["data"]


class DemoPage:
    def __init__(self, page: Page) -> None:
        self.page = page

    async def open(self, url: str) -> None:
        response = await self.page.goto(url, timeout=10_000)
        assert response is not None
        assert response.ok, f"{url} answered {response.status}"

    async def read(self) -> dict[str, Any]:
        shown: dict[str, Any] = await self.page.evaluate(READ_PAGE)
        return shown

    async def rows(self, kind: str = "event") -> list[Row]:
        return [Row(raw) for raw in (await self.read())["rows"] if raw["kind"] == kind]

    async def wait(self, expression: str, arg: Any, what: str, timeout: float = 15) -> None:
        try:
            await self.page.wait_for_function(expression, arg=arg, timeout=timeout * 1000)
        except PlaywrightTimeout:
            shown = await self.read()
            last = [(r["kind"], r["event"], r["data"][:50]) for r in shown["rows"][-8:]]
            raise AssertionError(
                f"page: {what} not within {timeout}s; state={shown['state']!r} "
                f"({shown['stateText']}), problem={shown['problem']!r}, last rows: {last}"
            ) from None

    async def wait_for_rows(self, count: int, kind: str = "event") -> list[Row]:
        await self.wait(ROWS_OF_KIND, [kind, count], f"{count} {kind} rows")
        return await self.rows(kind)

    async def wait_for_state(self, state: str) -> None:
        await self.wait(STATE_IS, state, f"state {state!r}")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest_asyncio.fixture(loop_scope="module")
async def demo(browser: Browser) -> AsyncIterator[DemoPage]:
    context = await browser.new_context(viewport={"width": 1200, "height": 760})
    try:
        yield DemoPage(await context.new_page())
    finally:
        await context.close()


async def test_the_page_shows_both_channels_then_the_reconnect_after_sigkill_and_new_events(
    demo: DemoPage,
    gateway_factory: Callable[..., GatewayProcess],
    redis_url: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {"SSE_RETRY_MS": "300"}
    first = gateway_factory(port=port, env=env)
    await demo.open(f"{first.base_url}{BOTH}")
    await demo.wait_for_state("open")
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", range(3))
        await publish_numbered(publisher, "reverse_echo", range(3), reverse=True)
        before = await demo.wait_for_rows(6)

        first.signal(signal.SIGKILL)
        first.wait(timeout=10)
        await demo.wait_for_state("reconnecting")
        await publish_numbered(publisher, "echo", range(3, 6))
        await publish_numbered(publisher, "reverse_echo", range(3, 6), reverse=True)
        gateway_factory(port=port, env=env)
        everything = await demo.wait_for_rows(12)
    await demo.wait_for_state("open")

    shown = await demo.read()
    assert_exactly(messages(everything, "echo"), numbered(6))
    assert_exactly(messages(everything, "reverse_echo"), numbered(6))
    assert_cursors_never_move_backwards(everything)
    assert [row.connection for row in everything] == [1] * 6 + [2] * 6
    assert [row.data for row in before] == [row.data for row in everything[:6]]
    assert (shown["opens"], shown["reconnects"]) == ("2", "1")
    assert shown["cursor"] == everything[-1].id
    notes = [row.data for row in await demo.rows("note")]
    assert notes == [
        "connection lost; the browser reconnects by itself",
        "reconnected: connection 2 resumed with Last-Event-ID",
    ]

    await demo.page.screenshot(path=str(tmp_path / "demo-page.png"))
    assert (tmp_path / "demo-page.png").stat().st_size > 10_000
    if os.environ.get("SSE_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(tmp_path / "demo-page.png", SCREENSHOT)


async def test_channels_are_added_and_removed_and_a_new_one_can_start_from_earliest(
    demo: DemoPage, gateway: GatewayProcess, redis_url: str
) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", range(2))
        await publish_numbered(publisher, "reverse_echo", range(2), reverse=True)
        await demo.open(f"{gateway.base_url}/")
        await demo.wait_for_state("idle")

        await demo.page.check("#from-earliest")
        await demo.page.fill("#channel-name", "echo")
        await demo.page.click("#add-channel button")
        await demo.wait_for_rows(2)
        # A second channel: echo resumes from the cursor, reverse_echo starts at earliest.
        await demo.page.fill("#channel-name", "reverse_echo")
        await demo.page.press("#channel-name", "Enter")
        rows = await demo.wait_for_rows(4)
        assert (await demo.read())["channels"] == ["echo", "reverse_echo"]
        assert demo.page.url.endswith("/?channel=echo&channel=reverse_echo&last_event_id=earliest")

        await demo.page.click('#channels li[data-channel="echo"] button')
        await demo.wait_for_state("open")
        await publish_numbered(publisher, "echo", [2])
        await publish_numbered(publisher, "reverse_echo", [2, 3], reverse=True)
        rows = await demo.wait_for_rows(6)

        await demo.page.click('#channels li[data-channel="reverse_echo"] button')
        await demo.wait_for_state("closed")
    assert messages(rows, "echo") == numbered(2), "nothing of echo after its removal"
    assert messages(rows, "reverse_echo") == numbered(4)
    assert [row.connection for row in rows] == [1, 1, 2, 2, 3, 3]
    shown = await demo.read()
    assert shown["channels"] == []
    assert demo.page.url.endswith("/?last_event_id=earliest")


async def test_payloads_are_shown_as_text_and_never_run(
    demo: DemoPage, gateway: GatewayProcess, redis_url: str
) -> None:
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", [0])
        await publisher.publish_raw(
            "echo",
            "echo",
            b'{"message":"%s","created_at":"2026-01-01T00:00:00Z"}'
            % hostile.replace('"', '\\"').encode(),
        )
    await demo.open(f"{gateway.base_url}/?channel=echo&last_event_id=earliest")
    rows = await demo.wait_for_rows(2)
    assert json.loads(rows[1].data)["message"] == hostile
    assert await demo.page.evaluate("() => window.pwned") is None
    assert await demo.page.locator("#rows img, #rows script").count() == 0


async def test_control_events_and_refusals_are_shown_with_the_gateways_words(
    demo: DemoPage, gateway: GatewayProcess
) -> None:
    await demo.open(f"{gateway.base_url}/?channel=echo&last_event_id=echo%3Dyesterday")
    [control] = await demo.wait_for_rows(1, kind="control")
    assert control.event == "cursor_invalid"
    assert '"value":"echo=yesterday"' in control.data

    await demo.open(f"{gateway.base_url}/?channel=no%20spaces")
    await demo.wait_for_state("failed")
    await demo.wait("() => !document.querySelector('#problem').hidden", None, "the refusal")
    shown = await demo.read()
    assert shown["problem"].startswith("400 invalid_channel: invalid channel name 'no spaces'")
    assert shown["problem"].endswith("(channel names are 1-64 of A-Z a-z 0-9 _ - . :)")


async def test_api_docs_render_offline_from_the_gateways_own_assets(
    demo: DemoPage, gateway: GatewayProcess
) -> None:
    """Every request the docs page makes goes to the gateway; anything else is cut."""
    elsewhere: list[str] = []

    async def only_the_gateway(route: Any) -> None:
        if route.request.url.startswith(gateway.base_url):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    await demo.page.route("**/*", only_the_gateway)
    await demo.open(f"{gateway.base_url}/docs")
    await demo.page.wait_for_selector("#operations-default-sse_sse_get", timeout=15_000)
    assert elsewhere == []
    # ReDoc's bundle fetches its footer logo from its vendor's CDN: /redoc is not served.
    assert httpx.get(f"{gateway.base_url}/redoc", timeout=10).status_code == 404


async def test_the_page_is_served_with_a_content_security_policy(gateway: GatewayProcess) -> None:
    page = httpx.get(f"{gateway.base_url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "://" not in page.text, "no absolute (CDN) URL: the page works offline"
    script = httpx.get(f"{gateway.base_url}/static/demo.js", timeout=10)
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "innerHTML" not in script.text
    for escape in ("/static/../routes.py", "/static/%2e%2e/routes.py"):
        assert httpx.get(f"{gateway.base_url}{escape}", timeout=10).status_code == 404
