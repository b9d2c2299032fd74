"""Liveness and readiness."""

from __future__ import annotations

import time

import httpx


def test_healthz_and_readyz_answer_when_redis_is_up(gateway) -> None:
    assert httpx.get(f"{gateway.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.base_url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_readyz_is_503_while_redis_is_down_and_200_after(redis_server, gateway_factory) -> None:
    gateway = gateway_factory()
    redis_server.stop()
    deadline = time.monotonic() + 15
    while (response := httpx.get(f"{gateway.base_url}/readyz", timeout=5)).status_code != 503:
        assert time.monotonic() < deadline, "readyz never reported the outage"
        time.sleep(0.1)
    assert response.json()["status"] == "not ready"
    assert httpx.get(f"{gateway.base_url}/healthz").status_code == 200
    redis_server.start()
    deadline = time.monotonic() + 20
    while httpx.get(f"{gateway.base_url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "readyz never recovered"
        time.sleep(0.1)


def test_event_schemas_are_served(gateway) -> None:
    schemas = httpx.get(f"{gateway.base_url}/events/schema").json()
    assert {"echo", "reverse_echo", "history_gap"} <= set(schemas)


def test_head_is_answered_like_get_without_a_body_but_on_the_stream(gateway_factory) -> None:
    # A monitor that checks with HEAD (RFC 9110: GET and HEAD are what every resource
    # answers) gets GET's status and headers; the stream's endless body has no HEAD.
    gateway = gateway_factory(env={"SSE_METRICS": "true"})
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        for path in ("/healthz", "/readyz", "/stats", "/metrics", "/events/schema"):
            get, head = client.get(path), client.head(path)
            assert (head.status_code, head.content) == (get.status_code, b""), path
            assert head.headers["content-type"] == get.headers["content-type"], path
        assert client.head("/no-such-route").status_code == 404
        refused = client.head("/sse?channel=echo")
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET"
