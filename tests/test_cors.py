"""CORS: pages on the origins in SSE_CORS_ORIGINS may read streams; other origins may not.

The browser enforces CORS; the gateway's part is the headers: Access-Control-Allow-Origin
only for allowed origins, the headers EventSource and fetch clients send (Last-Event-ID,
Authorization) allowed on preflight, credentials only when configured.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.processes import GatewayProcess
from tests.support.sse import sse_connect
from tests.support.standalone import standalone_gateway

APP = "https://app.example.com"
LOCAL = "http://localhost:3000"
FOREIGN = "https://evil.example.net"


@pytest.fixture(scope="module")
def cors_gateway() -> Iterator[GatewayProcess]:
    env = {"SSE_CORS_ORIGINS": f"{APP}, {LOCAL}", "SSE_CORS_ALLOW_CREDENTIALS": "true"}
    with standalone_gateway(env) as (gateway, _):
        yield gateway


def preflight(gateway: GatewayProcess, origin: str, headers: str) -> httpx.Response:
    return httpx.options(
        f"{gateway.base_url}/sse?channel=echo",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": headers,
        },
        timeout=10,
    )


@pytest.mark.parametrize("origin", [APP, LOCAL])
def test_a_preflight_from_an_allowed_origin_allows_the_sse_headers(
    cors_gateway: GatewayProcess, origin: str
) -> None:
    response = preflight(cors_gateway, origin, "last-event-id, authorization")
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "GET" in response.headers["access-control-allow-methods"]
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"last-event-id", "authorization"} <= allowed
    assert "Origin" in response.headers["vary"]


def test_a_preflight_from_a_foreign_origin_is_refused_in_json(
    cors_gateway: GatewayProcess,
) -> None:
    response = preflight(cors_gateway, FOREIGN, "last-event-id")
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    error = response.json()["error"]
    assert error["code"] == "cors_rejected"
    assert FOREIGN in error["message"]
    assert "SSE_CORS_ORIGINS" in error["hint"]


def test_a_preflight_asking_for_another_header_is_refused(cors_gateway: GatewayProcess) -> None:
    response = preflight(cors_gateway, APP, "x-custom-thing")
    assert response.status_code == 400
    assert "headers" in response.json()["error"]["message"]


async def test_a_cross_origin_stream_from_an_allowed_origin_is_readable(
    cors_gateway: GatewayProcess,
) -> None:
    headers = {"Origin": APP}
    async with sse_connect(cors_gateway.base_url, ["echo"], headers=headers) as stream:
        assert stream.response.headers["access-control-allow-origin"] == APP
        assert stream.response.headers["access-control-allow-credentials"] == "true"
        assert "Origin" in stream.response.headers["vary"]
        await stream.wait_for_opening(timeout=10)


async def test_a_cross_origin_stream_from_a_foreign_origin_gets_no_cors_grant(
    cors_gateway: GatewayProcess,
) -> None:
    async with sse_connect(cors_gateway.base_url, ["echo"], headers={"Origin": FOREIGN}) as stream:
        # The server answers; without Access-Control-Allow-Origin the browser hides it
        # (Starlette still sends Allow-Credentials, which grants nothing on its own).
        assert "access-control-allow-origin" not in stream.response.headers


def test_errors_carry_cors_headers_so_the_page_can_read_them(
    cors_gateway: GatewayProcess,
) -> None:
    response = httpx.get(f"{cors_gateway.base_url}/sse", headers={"Origin": APP}, timeout=10)
    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == APP
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "retry-after" in exposed
    assert "www-authenticate" in exposed


def test_cors_is_off_by_default(gateway: GatewayProcess) -> None:
    response = preflight(gateway, APP, "last-event-id")
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    with httpx.stream(
        "GET", f"{gateway.base_url}/sse?channel=echo", headers={"Origin": APP}, timeout=10
    ) as streamed:
        assert streamed.status_code == 200
        assert "access-control-allow-origin" not in streamed.headers


def test_any_origin_can_be_allowed_without_credentials(gateway_factory) -> None:
    gateway = gateway_factory(env={"SSE_CORS_ORIGINS": "*"})
    response = preflight(gateway, FOREIGN, "last-event-id")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
