"""Debian's Chromium, driven by Playwright, for the tests that need a real browser.

Chromium is not optional: CI installs it (scripts/test), so a missing browser fails
those tests with a message instead of skipping them. Never ``playwright install``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

try:
    from playwright.async_api import Browser, async_playwright
except ImportError:  # pragma: no cover - reported by require_browser as a failure
    async_playwright = None

CHROMIUM = Path(os.environ.get("SSE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def require_browser() -> None:
    """Fail (not skip) when the browser cannot run: CI installs both parts."""
    if async_playwright is None:
        pytest.fail("playwright is not installed: pip install -e '.[test]' (scripts/test does)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: install Debian's package "
            "(apt-get install chromium; scripts/test does) or set SSE_TEST_CHROMIUM"
        )


@contextlib.asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Browser]:
    """A launched Chromium, closed on exit (a launch costs seconds: share one per module).

    ``extra_args`` go to Chromium after the usual ones (``--ignore-certificate-errors``
    for a test's self-signed certificate)."""
    require_browser()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, *extra_args],
            timeout=30_000,
        )
        try:
            yield launched
        finally:
            await launched.close()
