"""Optional JWT auth: with a key configured, /sse needs a token whose claim lists the channels.

401 (JSON, WWW-Authenticate) for a missing, malformed, expired, wrongly signed or unsigned
token; 403 naming each channel outside the claim. Keys are pinned to their algorithm, so
alg:none and alg confusion (HS256 "signed" with the RSA public key) fail.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from contract.events import Echo, EchoPayload
from producers.publisher import Publisher
from tests.support.processes import GatewayProcess, run_cli
from tests.support.redis_server import RedisServer
from tests.support.sse import sse_connect, sse_url
from tests.support.standalone import standalone_gateway

SECRET = "test-secret-of-at-least-thirty-two-bytes"
AUDIENCE = "sse-clients"
ISSUER = "https://issuer.test"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_KEY = rsa_key()
OTHER_RSA_KEY = rsa_key()


def claims(channels: Any = ("echo",), lifetime: float = 7200, **extra: Any) -> dict[str, Any]:
    # Parametrized tokens are made when the tests are collected, so they must outlive the
    # whole suite (300 s expired before test_auth ran on a busy machine: 401 token_expired).
    now = int(time.time())
    body: dict[str, Any] = {
        "sub": "tester",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + lifetime,
        "channels": list(channels) if isinstance(channels, tuple) else channels,
    }
    body.update(extra)
    return {key: value for key, value in body.items() if value is not None}


def hs256(body: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(body, secret, algorithm="HS256")


def rs256(body: dict[str, Any], key: rsa.RSAPrivateKey = RSA_KEY) -> str:
    return jwt.encode(body, key, algorithm="RS256")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def handmade(header: dict[str, Any], body: dict[str, Any], sign: bytes | None) -> str:
    """A token built by hand: PyJWT refuses to make the forgeries an attacker would send."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
    if sign is None:
        return signing_input + "."
    signature = hmac.new(sign, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@pytest.fixture(scope="module")
def auth_stack() -> Iterator[tuple[GatewayProcess, RedisServer]]:
    """One gateway with both keys, audience and issuer: every token case hits it."""
    env = {
        "SSE_AUTH_HS256_SECRET": SECRET,
        "SSE_AUTH_RS256_PUBLIC_KEY": public_pem(RSA_KEY),
        "SSE_AUTH_AUDIENCE": AUDIENCE,
        "SSE_AUTH_ISSUER": ISSUER,
    }
    with standalone_gateway(env) as stack:
        yield stack


@pytest.fixture
def auth_gateway(auth_stack: tuple[GatewayProcess, RedisServer]) -> GatewayProcess:
    return auth_stack[0]


@pytest.fixture
def auth_redis(auth_stack: tuple[GatewayProcess, RedisServer]) -> RedisServer:
    return auth_stack[1]


def get_sse(
    gateway: GatewayProcess,
    channels: list[str],
    *,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    token: str | None = None,
) -> httpx.Response:
    """A request that must be refused before streaming (so a plain GET returns)."""
    params: list[tuple[str, str]] = [("channel", c) for c in channels]
    if token is not None:
        params.append(("token", token))
    with httpx.Client(cookies=cookies, timeout=10) as client:
        return client.get(f"{gateway.base_url}/sse", params=params, headers=headers)


def assert_refused(response: httpx.Response, status: int, code: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["hint"], error
    for fragment in fragments:
        assert fragment in error["message"], error
    assert response.headers["www-authenticate"].startswith("Bearer "), response.headers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_valid_hs256_bearer_token_streams_its_channel(
    auth_gateway: GatewayProcess, auth_redis: RedisServer
) -> None:
    headers = bearer(hs256(claims(["echo"])))
    async with (
        Publisher.from_url(auth_redis.url) as publisher,
        sse_connect(auth_gateway.base_url, ["echo"], headers=headers) as stream,
    ):
        await stream.wait_for_opening(timeout=10)
        await publisher.publish("echo", Echo(data=EchoPayload(message="for token holders")))
        (event,) = await stream.take(1, timeout=10)
    assert event.event == "echo"
    assert json.loads(event.data)["message"] == "for token holders"


async def test_a_valid_rs256_token_in_the_query_streams_for_eventsource(
    auth_gateway: GatewayProcess,
) -> None:
    url = (
        sse_url(auth_gateway.base_url, ["room.1", "echo"])
        + "&token="
        + rs256(claims(["echo", "room.*"]))
    )
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", url) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")


async def test_a_valid_token_in_the_cookie_streams(auth_gateway: GatewayProcess) -> None:
    cookie = {"Cookie": f"sse_token={hs256(claims(['echo']))}"}
    async with sse_connect(auth_gateway.base_url, ["echo"], headers=cookie) as stream:
        opening = await stream.wait_for_opening(timeout=10)
    assert opening.id is not None
    assert opening.id.startswith("echo=")


@pytest.mark.parametrize(
    ("granted", "requested"),
    [
        (["room.*"], ["room.1", "room.lobby"]),
        (["*"], ["echo", "anything.at:all"]),
        (["echo", "news.*"], ["echo", "news.sport"]),
    ],
)
async def test_prefix_patterns_grant_every_channel_they_start(
    auth_gateway: GatewayProcess, granted: list[str], requested: list[str]
) -> None:
    headers = bearer(hs256(claims(granted)))
    async with sse_connect(auth_gateway.base_url, requested, headers=headers) as stream:
        await stream.wait_for_opening(timeout=10)


def test_no_token_is_a_401_that_says_where_to_put_one(auth_gateway: GatewayProcess) -> None:
    response = get_sse(auth_gateway, ["echo"])
    assert_refused(response, 401, "token_missing", "needs a token")
    hint = response.json()["error"]["hint"]
    assert "Authorization: Bearer" in hint
    assert "token=" in hint
    assert "sse_token" in hint


@pytest.mark.parametrize(
    ("case", "headers", "expected"),
    [
        ("not a JWT", bearer("not-a-jwt"), "not a JWT"),
        ("three garbage parts", bearer("a.b.c"), "not a JWT"),
        ("basic scheme", {"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer <token>"),
        ("bearer without token", {"Authorization": "Bearer"}, "Bearer <token>"),
        ("oversized", bearer("x" * 9000), "at most 8192"),
    ],
)
def test_a_malformed_token_is_a_401(
    auth_gateway: GatewayProcess, case: str, headers: dict[str, str], expected: str
) -> None:
    assert_refused(get_sse(auth_gateway, ["echo"], headers=headers), 401, "token_invalid", expected)


def test_an_expired_token_is_a_401_token_expired(auth_gateway: GatewayProcess) -> None:
    token = hs256(claims(lifetime=-60))
    response = get_sse(auth_gateway, ["echo"], headers=bearer(token))
    assert_refused(response, 401, "token_expired", "expired")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("case", "token"),
    [
        ("hs256, another secret", hs256(claims(), secret="another-secret-of-thirty-two-bytes")),
        ("rs256 with another key", rs256(claims(), key=OTHER_RSA_KEY)),
    ],
)
def test_a_token_with_a_wrong_signature_is_a_401(
    auth_gateway: GatewayProcess, case: str, token: str
) -> None:
    response = get_sse(auth_gateway, ["echo"], headers=bearer(token))
    assert_refused(response, 401, "token_invalid", "signature")


def test_an_unsigned_alg_none_token_is_a_401(auth_gateway: GatewayProcess) -> None:
    token = handmade({"alg": "none", "typ": "JWT"}, claims(["*"]), sign=None)
    response = get_sse(auth_gateway, ["echo"], headers=bearer(token))
    assert_refused(response, 401, "token_invalid", "'none'")


def test_an_hs256_token_keyed_with_the_rsa_public_key_is_a_401(
    auth_gateway: GatewayProcess,
) -> None:
    # The classic alg confusion: an attacker knows the public key and "signs" with it.
    token = handmade({"alg": "HS256", "typ": "JWT"}, claims(["*"]), public_pem(RSA_KEY).encode())
    response = get_sse(auth_gateway, ["echo"], headers=bearer(token))
    assert_refused(response, 401, "token_invalid", "signature")


@pytest.mark.parametrize(
    ("case", "body", "expected"),
    [
        ("no exp", claims(exp=None), "'exp'"),
        ("other audience", claims(aud="someone-else"), "'aud'"),
        ("no audience", claims(aud=None), "'aud'"),
        ("other issuer", claims(iss="https://evil.test"), "'iss'"),
        ("no channels claim", claims(channels=None), "'channels'"),
        ("channels not a list", claims(channels="echo"), "list of strings"),
        ("bad pattern", claims(channels=["ro*om"]), "'ro*om'"),
        ("not yet valid", claims(nbf=int(time.time()) + 600), "not yet valid"),
    ],
)
def test_a_token_failing_a_claim_check_is_a_401_naming_the_claim(
    auth_gateway: GatewayProcess, case: str, body: dict[str, Any], expected: str
) -> None:
    response = get_sse(auth_gateway, ["echo"], headers=bearer(hs256(body)))
    assert_refused(response, 401, "token_invalid", expected)


@pytest.mark.parametrize(
    ("granted", "requested", "refused"),
    [
        (["echo"], ["secret"], "'secret'"),
        (["room.*"], ["roomy"], "'roomy'"),
        (["room.*"], ["room"], "'room'"),
        ([], ["echo"], "'echo'"),
    ],
)
def test_a_channel_outside_the_claim_is_a_403_naming_it(
    auth_gateway: GatewayProcess, granted: list[str], requested: list[str], refused: str
) -> None:
    response = get_sse(auth_gateway, requested, headers=bearer(hs256(claims(granted))))
    assert_refused(response, 403, "channel_forbidden", refused)
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_a_403_names_only_the_channels_outside_the_claim(auth_gateway: GatewayProcess) -> None:
    token = hs256(claims(["echo", "room.*"]))
    response = get_sse(auth_gateway, ["echo", "room.2", "admin", "audit"], headers=bearer(token))
    assert_refused(response, 403, "channel_forbidden", "'admin', 'audit'", "echo, room.*")
    assert "'echo'" not in response.json()["error"]["message"]


def test_the_query_token_and_cookie_are_checked_like_the_header(
    auth_gateway: GatewayProcess,
) -> None:
    expired = hs256(claims(lifetime=-60))
    assert_refused(get_sse(auth_gateway, ["echo"], token=expired), 401, "token_expired")
    forbidden = hs256(claims(["other"]))
    response = get_sse(auth_gateway, ["echo"], cookies={"sse_token": forbidden})
    assert_refused(response, 403, "channel_forbidden", "'echo'")


def test_the_authorization_header_wins_over_the_query_token(
    auth_gateway: GatewayProcess,
) -> None:
    # An explicit bad header is not rescued by an ambient credential.
    response = get_sse(
        auth_gateway, ["echo"], headers=bearer("junk"), token=hs256(claims(["echo"]))
    )
    assert_refused(response, 401, "token_invalid")


def test_an_rs256_only_gateway_refuses_hs256_and_reads_its_key_from_a_file(
    gateway_factory: Any, tmp_path: Path
) -> None:
    key_file = tmp_path / "public.pem"
    key_file.write_text(public_pem(RSA_KEY))
    gateway = gateway_factory(env={"SSE_AUTH_RS256_PUBLIC_KEY": str(key_file)})
    forged = handmade({"alg": "HS256", "typ": "JWT"}, claims(["*"]), public_pem(RSA_KEY).encode())
    response = get_sse(gateway, ["echo"], headers=bearer(forged))
    assert_refused(response, 401, "token_invalid", "RS256")
    good = rs256(claims(["echo"], aud=None, iss=None))
    with httpx.stream(
        "GET", sse_url(gateway.base_url, ["echo"]), headers=bearer(good), timeout=10
    ) as response:
        assert response.status_code == 200


def test_auth_is_off_without_a_key(gateway: GatewayProcess) -> None:
    with httpx.stream("GET", sse_url(gateway.base_url, ["echo"]), timeout=10) as response:
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SSE_AUTH_HS256_SECRET": "short"}, "SSE_AUTH_HS256_SECRET: Value error, must be at"),
        ({"SSE_AUTH_RS256_PUBLIC_KEY": "/no/such/key.pem"}, "cannot read PEM file"),
        ({"SSE_AUTH_RS256_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nxx"}, "not a PEM public key"),
    ],
)
def test_a_bad_key_setting_stops_the_gateway_with_one_line(
    env: dict[str, str], expected: str
) -> None:
    result = run_cli("gateway", "--port", "1", env=env, inherit_env=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr


async def test_stats_hide_channel_names_when_auth_is_on(auth_gateway: GatewayProcess) -> None:
    headers = bearer(hs256(claims(["private.alice"])))
    async with sse_connect(auth_gateway.base_url, ["private.alice"], headers=headers) as stream:
        await stream.wait_for_opening(timeout=10)
        hub: Any = auth_gateway.stats()["hub"]
    assert hub["channels"] >= 1
    assert hub["channel_names"] is None
    assert "private.alice" not in json.dumps(auth_gateway.stats())
