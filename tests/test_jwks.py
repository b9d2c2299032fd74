"""Keys from a JWKS URL: tokens are verified by their ``kid``, rotated keys are fetched when
a token names one, unknown ``kid``s cannot make the gateway hammer the key server, and a
slow key server never stalls the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.jwks_server import JwksServer, public_jwk
from tests.support.processes import GatewayProcess
from tests.support.sse import sse_connect, sse_url
from tests.support.stalled import healthz_seconds

GatewayFactory = Callable[..., GatewayProcess]

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
COOLDOWN = 1.0


def signed(key: Any, alg: str, kid: str | None, lifetime: float = 300) -> str:
    body = {"sub": "tester", "exp": int(time.time() + lifetime), "channels": ["echo"]}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def get_sse(gateway: GatewayProcess, value: str) -> httpx.Response:
    return httpx.get(
        sse_url(gateway.base_url, ["echo"]),
        headers={"Authorization": f"Bearer {value}"},
        timeout=10,
    )


def assert_401(response: httpx.Response, *fragments: str) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "token_invalid", error
    for fragment in fragments:
        assert fragment in error["message"], error


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys = [public_jwk(RSA_KEY, "rsa-1", "RS256")]
    with server.serving():
        yield server


@pytest.fixture
def jwks_gateway(gateway_factory: GatewayFactory, jwks: JwksServer) -> GatewayProcess:
    env = {"SSE_AUTH_JWKS_URL": jwks.url, "SSE_AUTH_JWKS_COOLDOWN": str(COOLDOWN)}
    return gateway_factory(env=env)


async def test_tokens_are_verified_by_kid_and_a_rotated_key_is_fetched(
    jwks_gateway: GatewayProcess, jwks: JwksServer
) -> None:
    first = signed(RSA_KEY, "RS256", "rsa-1")
    async with sse_connect(jwks_gateway.base_url, headers={"Authorization": f"Bearer {first}"}):
        pass
    fetched = jwks.fetches
    assert fetched == 1
    # Known keys are not fetched again.
    async with sse_connect(jwks_gateway.base_url, headers={"Authorization": f"Bearer {first}"}):
        pass
    assert jwks.fetches == fetched

    # The issuer rotates to an ES256 key: the first token naming it fetches the set again.
    jwks.keys = [public_jwk(EC_KEY, "ec-2", "ES256")]
    await asyncio.sleep(COOLDOWN)
    rotated = signed(EC_KEY, "ES256", "ec-2")
    async with sse_connect(
        jwks_gateway.base_url, headers={"Authorization": f"Bearer {rotated}"}
    ) as stream:
        opening = await stream.wait_for_opening(timeout=10)
    assert opening.id is not None
    assert jwks.fetches == fetched + 1
    # The old key left the set: its tokens are refused once the set was fetched again.
    refused = await asyncio.to_thread(get_sse, jwks_gateway, first)
    assert_401(refused, "rsa-1")


async def test_a_token_without_a_kid_or_signed_with_another_alg_is_a_401(
    jwks_gateway: GatewayProcess,
) -> None:
    no_kid = await asyncio.to_thread(get_sse, jwks_gateway, signed(RSA_KEY, "RS256", None))
    assert_401(no_kid, "'kid'")
    # A key is for its own algorithm: an RS384 token naming the RS256 key is refused.
    other_alg = await asyncio.to_thread(get_sse, jwks_gateway, signed(RSA_KEY, "RS384", "rsa-1"))
    assert_401(other_alg, "RS256 only")


@pytest.mark.parametrize("body", [b"<html>not json</html>", b"[]", b'{"keys": 7}'])
async def test_a_broken_key_server_is_a_401_that_says_why(
    jwks_gateway: GatewayProcess, jwks: JwksServer, body: bytes
) -> None:
    jwks.body = body
    response = await asyncio.to_thread(get_sse, jwks_gateway, signed(RSA_KEY, "RS256", "rsa-1"))
    assert_401(response, "rsa-1", jwks.url)
    assert "Traceback" not in jwks_gateway.log()


async def test_unknown_kids_fetch_the_keys_at_most_once_per_cooldown(
    jwks_gateway: GatewayProcess, jwks: JwksServer
) -> None:
    started = time.monotonic()
    before = jwks.fetches
    for n in range(30):
        response = await asyncio.to_thread(get_sse, jwks_gateway, signed(RSA_KEY, "RS256", f"x{n}"))
        assert_401(response, f"x{n}")
    elapsed = time.monotonic() - started
    fetches = jwks.fetches - before
    print(f"\n30 unknown kids in {elapsed:.2f}s: {fetches} JWKS fetches")
    assert 1 <= fetches <= 1 + int(elapsed / COOLDOWN)


async def test_a_slow_key_server_does_not_stall_the_gateway(
    jwks_gateway: GatewayProcess, jwks: JwksServer
) -> None:
    jwks.delay = 3.0
    headers = {"Authorization": f"Bearer {signed(RSA_KEY, 'RS256', 'rsa-1')}"}

    async def open_stream() -> str | None:
        async with sse_connect(jwks_gateway.base_url, headers=headers) as stream:
            return (await stream.wait_for_opening(timeout=10)).id

    waiting = asyncio.create_task(open_stream())
    while jwks.fetches == 0:  # noqa: ASYNC110 - a counter bumped by the server's thread
        await asyncio.sleep(0.02)
    # The fetch runs in a thread: the event loop answers meanwhile.
    assert await healthz_seconds(jwks_gateway.base_url) < 1
    assert not waiting.done()
    assert await waiting is not None  # the stream opened once the keys came
