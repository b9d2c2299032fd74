"""Forwarded headers from trusted proxies: uvicorn's rewrite, applied by the app itself."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from gateway._fastpath.forwarded import ForwardedHeaders
from gateway.settings import GatewaySettings
from tests.support.processes import GatewayProcess
from tests.support.sse import sse_connect


def http_scope(client: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": "http",
        "client": (client, 50000),
        "headers": list(headers),
    }


def test_a_trusted_proxy_sets_the_client_and_scheme() -> None:
    scope = http_scope(
        "127.0.0.1", (b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")
    )
    ForwardedHeaders("127.0.0.1").apply(scope)
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "https"


def test_the_scheme_alone_is_taken_from_a_trusted_proxy() -> None:
    scope = http_scope("127.0.0.1", (b"host", b"example.com"), (b"x-forwarded-proto", b"https"))
    ForwardedHeaders("127.0.0.1").apply(scope)
    assert scope["client"] == ("127.0.0.1", 50000)
    assert scope["scheme"] == "https"


def test_a_request_without_forwarded_headers_is_left_as_it_is() -> None:
    scope = http_scope("127.0.0.1", (b"host", b"example.com"), (b"x-forwarded-host", b"a"))
    before = dict(scope)
    ForwardedHeaders("*").apply(scope)
    assert scope == before


def test_an_untrusted_peer_cannot_claim_another_address() -> None:
    scope = http_scope("198.51.100.9", (b"x-forwarded-for", b"203.0.113.7"))
    ForwardedHeaders("127.0.0.1").apply(scope)
    assert scope["client"] == ("198.51.100.9", 50000)
    assert scope["scheme"] == "http"


def test_trusted_proxies_come_from_forwarded_allow_ips(monkeypatch: Any) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")
    settings = GatewaySettings()
    assert settings.forwarded_allow_ips == "10.0.0.1"
    scope = http_scope("127.0.0.1", (b"x-forwarded-for", b"203.0.113.7"))
    ForwardedHeaders(settings.forwarded_allow_ips).apply(scope)
    assert scope["client"] == ("127.0.0.1", 50000)


async def test_the_access_log_names_the_forwarded_client_of_a_stream_and_a_request(
    gateway_factory: Any,
) -> None:
    gateway: GatewayProcess = gateway_factory(args=["--access-log"])
    forwarded = {"X-Forwarded-For": "203.0.113.7"}
    async with sse_connect(gateway.base_url, ["echo"], headers=forwarded):
        pass  # opened: uvicorn logs a stream's line when its response starts
    response = await asyncio.to_thread(
        httpx.get, f"{gateway.base_url}/healthz", headers={"X-Forwarded-For": "203.0.113.8"}
    )
    assert response.status_code == 200
    deadline = time.monotonic() + 10
    while not all(f"{ip}:0 - " in gateway.log() for ip in ("203.0.113.7", "203.0.113.8")):
        assert time.monotonic() < deadline, gateway.log()[-2000:]
        await asyncio.sleep(0.05)
