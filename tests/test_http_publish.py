"""HTTP publish: ``POST /channels/{channel}/events`` (SSE_HTTP_PUBLISH=true).

An event published over HTTP is an event like any other: subscribers get it with the
bytes that are in history, the producers' retention applies, an ``Idempotency-Key``
publishes it once, and on a Redis Cluster it is routed to its master and confirmed by a
replica before anyone sees it. Bad input is a 4xx that says what is wrong, and nothing
is written.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from redis.asyncio import Redis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from contract.wire import FIELD_DATA, Keyspace
from gateway.http.app import create_app
from gateway.settings import GatewaySettings
from tests.support.http_publish import PUBLISH_ON, post_event, publish_url, published_id
from tests.support.processes import GatewayProcess
from tests.support.redis_cluster import LocalRedisCluster
from tests.support.redis_server import RedisServer
from tests.support.shard_listener import listening, wait_for_live
from tests.support.sse import sse_connect
from tests.support.standalone import standalone_gateway

KEYS = Keyspace()
SECRET = "a-test-secret-of-at-least-thirty-two-bytes"
CREATED = "2023-11-04T13:02:10.760797Z"


async def history_entries(redis_url: str, channel: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    async with Redis.from_url(redis_url) as redis:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(
            KEYS.history_key(channel)
        )
    return entries


async def test_an_event_published_over_http_reaches_subscribers_with_the_bytes_in_history(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    gateway = gateway_factory(env=PUBLISH_ON)
    async with sse_connect(gateway.base_url, ["echo"]) as stream:
        response = await asyncio.to_thread(
            post_event,
            gateway.base_url,
            "echo",
            "echo",
            {"message": "hello over http", "created_at": CREATED},
        )
        entry_id = published_id(response)
        (frame,) = await stream.take(1, timeout=10)

    assert response.json() == {
        "id": entry_id,
        "channel": "echo",
        "event": "echo",
        "cursor": f"echo={entry_id}",
    }
    ((stored_id, fields),) = await history_entries(redis_url, "echo")
    assert stored_id.decode() == entry_id
    assert (
        fields[FIELD_DATA]
        == b'{"message":"hello over http","created_at":"' + CREATED.encode() + b'"}'
    )
    assert (frame.event, frame.data, frame.id) == (
        "echo",
        fields[FIELD_DATA].decode(),
        response.json()["cursor"],
    )


async def test_the_same_idempotency_key_publishes_once_whatever_the_second_body(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    gateway = gateway_factory(env=PUBLISH_ON)
    base = gateway.base_url
    async with sse_connect(base, ["echo"]) as stream:
        first = published_id(post_event(base, "echo", "echo", {"message": "one"}, key="k-1"))
        again = published_id(post_event(base, "echo", "echo", {"message": "two"}, key="k-1"))
        other = published_id(post_event(base, "echo", "echo", {"message": "three"}, key="k-2"))
        frames = await stream.take(2, timeout=10)
        # Published on another channel, the same key is another event.
        elsewhere = published_id(post_event(base, "room.1", "echo", {"message": "x"}, key="k-1"))

    assert again == first
    assert other != first
    assert elsewhere != first
    assert [json.loads(f.data)["message"] for f in frames] == ["one", "three"]
    entries = await history_entries(redis_url, "echo")
    assert [(i.decode(), f[b"i"]) for i, f in entries] == [(first, b"key:k-1"), (other, b"key:k-2")]


async def test_http_publish_trims_history_like_the_producers(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    gateway = gateway_factory(
        env={**PUBLISH_ON, "SSE_HISTORY_MAXLEN": "3", "SSE_HISTORY_EXACT_TRIM": "true"}
    )
    ids = [
        published_id(post_event(gateway.base_url, "echo", "echo", {"message": f"m{n}"}))
        for n in range(6)
    ]
    assert [i.decode() for i, _ in await history_entries(redis_url, "echo")] == ids[-3:]


def test_http_publish_is_off_unless_enabled(gateway: GatewayProcess) -> None:
    response = post_event(gateway.base_url, "echo", "echo", {"message": "hi"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "publish_disabled"
    assert "SSE_HTTP_PUBLISH=true" in error["hint"]


# -- bad input: one gateway, every refusal, nothing written -------------------------------


@pytest.fixture(scope="module")
def strict_gateway() -> Iterator[tuple[GatewayProcess, RedisServer]]:
    env = {
        **PUBLISH_ON,
        "SSE_PUBLISH_MAX_BODY_BYTES": "1024",
        "SSE_CHANNEL_PATTERN": r"echo|room\..+",
    }
    with standalone_gateway(env) as started:
        yield started


GOOD = json.dumps({"event": "echo", "data": {"message": "hi"}}).encode()
JSON = {"Content-Type": "application/json"}


async def chunks(total: int) -> AsyncIterator[bytes]:
    """A body sent chunked (no Content-Length), so the gateway finds its size by reading."""
    yield b'{"event": "echo", "data": {"message": "'
    for _ in range(total // 100):
        yield b"x" * 100
    yield b'"}}'


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str, str]] = [
    # (id, channel, httpx request arguments, status, code, a part of the message)
    (
        "no content type",
        "echo",
        {"content": GOOD},
        415,
        "unsupported_media_type",
        "no Content-Type",
    ),
    (
        "form content type",
        "echo",
        {"content": GOOD, "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        415,
        "unsupported_media_type",
        "x-www-form-urlencoded",
    ),
    (
        "other charset",
        "echo",
        {"content": GOOD, "headers": {"Content-Type": "application/json; charset=latin-1"}},
        415,
        "unsupported_media_type",
        "latin-1",
    ),
    ("empty body", "echo", {"content": b"", "headers": JSON}, 400, "invalid_json", "empty"),
    (
        "broken JSON",
        "echo",
        {"content": b'{"event": "echo",', "headers": JSON},
        400,
        "invalid_json",
        "line 1",
    ),
    (
        "NaN",
        "echo",
        {"content": b'{"event": "echo", "data": NaN}', "headers": JSON},
        400,
        "invalid_json",
        "not valid JSON",
    ),
    (
        "not UTF-8",
        "echo",
        {"content": b'{"event": "\xff"}', "headers": JSON},
        400,
        "invalid_json",
        "not valid JSON",
    ),
    (
        "deep nesting",
        "echo",
        {"content": b"[" * 300 + b"]" * 300, "headers": JSON},
        400,
        "invalid_json",
        "recursion",
    ),
    ("an array", "echo", {"json": [1, 2]}, 422, "invalid_body", '{"event"'),
    ("no data", "echo", {"json": {"event": "echo"}}, 422, "invalid_body", '{"event"'),
    (
        "event not a string",
        "echo",
        {"json": {"event": 5, "data": {}}},
        422,
        "invalid_body",
        '{"event"',
    ),
    (
        "extra member",
        "echo",
        {"json": {"event": "echo", "data": {"message": "x"}, "id": "1-0"}},
        422,
        "invalid_body",
        '{"event"',
    ),
    (
        "unknown event",
        "echo",
        {"json": {"event": "nope", "data": {}}},
        404,
        "unknown_event",
        "'nope'",
    ),
    (
        "control event",
        "echo",
        {"json": {"event": "history_gap", "data": {}}},
        403,
        "event_not_publishable",
        "control event",
    ),
    (
        "bad payload",
        "echo",
        {"json": {"event": "echo", "data": {"message": 5}}},
        422,
        "invalid_event_data",
        "'echo' payload",
    ),
    (
        "infinite number",
        "echo",
        {
            "content": b'{"event": "echo", "data": {"message": "x", "created_at": 1e400}}',
            "headers": JSON,
        },
        422,
        "invalid_event_data",
        "'echo' payload",
    ),
    (
        "large body",
        "echo",
        {"json": {"event": "echo", "data": {"message": "x" * 2000}}},
        413,
        "body_too_large",
        "Content-Length says",
    ),
    (
        "large chunked body",
        "echo",
        {"content": chunks(4000), "headers": JSON},
        413,
        "body_too_large",
        "over 1024 bytes",
    ),
    (
        "bad channel",
        "bad{name}",
        {"content": GOOD, "headers": JSON},
        400,
        "invalid_channel",
        "bad{name}",
    ),
    (
        "channel not served",
        "other",
        {"content": GOOD, "headers": JSON},
        400,
        "invalid_channel",
        "not served",
    ),
    (
        "key with a space",
        "echo",
        {"content": GOOD, "headers": {**JSON, "Idempotency-Key": "a b"}},
        400,
        "invalid_idempotency_key",
        "'a b'",
    ),
    (
        "key too long",
        "echo",
        {"content": GOOD, "headers": {**JSON, "Idempotency-Key": "k" * 129}},
        400,
        "invalid_idempotency_key",
        "1-128",
    ),
]


@pytest.mark.parametrize(
    ("channel", "request_args", "status", "code", "says"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_REQUESTS],
)
async def test_bad_publish_requests_get_a_clear_4xx_and_write_nothing(
    strict_gateway: tuple[GatewayProcess, RedisServer],
    channel: str,
    request_args: dict[str, Any],
    status: int,
    code: str,
    says: str,
) -> None:
    gateway, redis_server = strict_gateway
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(publish_url(gateway.base_url, channel), **request_args)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert says in error["message"]
    assert error["hint"]
    async with Redis.from_url(redis_server.url) as redis:
        assert await redis.keys("*") == []


async def test_payload_errors_are_pydantics_and_point_into_the_body(
    strict_gateway: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, _ = strict_gateway
    body = {"event": "echo", "data": {"message": ["not", "text"], "created_at": "yesterday"}}
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(publish_url(gateway.base_url, "echo"), json=body)
    assert response.status_code == 422
    errors = response.json()["error"]["errors"]
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["data", "message"], "string_type"),
        (["data", "created_at"], "datetime_from_date_parsing"),
    ]
    assert all(e["msg"] for e in errors)
    unknown = await asyncio.to_thread(post_event, gateway.base_url, "echo", "nope", {})
    assert "echo, reverse_echo" in unknown.json()["error"]["hint"]


# -- auth: a token whose `publish` claim lists the channel ------------------------------


def token(lifetime: float = 300, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "tester", "exp": now + lifetime, **claims}, SECRET, "HS256")


@pytest.fixture(scope="module")
def auth_gateway() -> Iterator[tuple[GatewayProcess, RedisServer]]:
    with standalone_gateway({**PUBLISH_ON, "SSE_AUTH_HS256_SECRET": SECRET}) as started:
        yield started


@pytest.mark.parametrize(
    ("credentials", "status", "code", "says"),
    [
        pytest.param({}, 401, "token_missing", "to publish", id="no token"),
        pytest.param(
            {"params": lambda: {"token": token(channels=["*"], publish=["*"])}},
            401,
            "token_missing",
            "to publish",
            id="token in the URL",
        ),
        pytest.param(
            {"bearer": lambda: token(channels=["*"])},
            403,
            "publish_forbidden",
            "no 'publish' claim",
            id="read-only token",
        ),
        pytest.param(
            {"bearer": lambda: token(channels=["*"], publish=["room.*"])},
            403,
            "publish_forbidden",
            "grants room.*",
            id="another channel",
        ),
        pytest.param(
            {"bearer": lambda: token(publish="echo")},
            401,
            "token_invalid",
            "'publish' claim is malformed",
            id="malformed claim",
        ),
        pytest.param(
            {"bearer": lambda: token(lifetime=-10, publish=["*"])},
            401,
            "token_expired",
            "expired",
            id="expired token",
        ),
        pytest.param(
            {"bearer": lambda: jwt.encode({"exp": time.time() + 60, "publish": ["*"]}, "x" * 32)},
            401,
            "token_invalid",
            "signature",
            id="wrong key",
        ),
    ],
)
async def test_publishing_with_auth_on_needs_a_publish_claim_covering_the_channel(
    auth_gateway: tuple[GatewayProcess, RedisServer],
    credentials: dict[str, Any],
    status: int,
    code: str,
    says: str,
) -> None:
    gateway, redis_server = auth_gateway
    # Tokens are made now, not at collection: a long run would see them expire.
    headers = {}
    if "bearer" in credentials:
        headers["Authorization"] = f"Bearer {credentials['bearer']()}"
    params = credentials["params"]() if "params" in credentials else None
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            publish_url(gateway.base_url, "echo"),
            json={"event": "echo", "data": {"message": "hi"}},
            headers=headers,
            params=params,
        )
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert says in response.json()["error"]["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    async with Redis.from_url(redis_server.url) as redis:
        assert await redis.keys("*") == []


async def test_a_publish_claim_pattern_lets_a_token_publish_to_matching_channels(
    auth_gateway: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, redis_server = auth_gateway
    writer = token(publish=["room.*", "echo"])
    reader = token(channels=["room.*"])
    async with sse_connect(
        gateway.base_url, ["room.7"], headers={"Authorization": f"Bearer {reader}"}
    ) as stream:
        entry_id = published_id(
            await asyncio.to_thread(
                post_event, gateway.base_url, "room.7", "echo", {"message": "hi"}, token=writer
            )
        )
        (frame,) = await stream.take(1, timeout=10)
    assert frame.id == f"room.7={entry_id}"
    assert [i.decode() for i, _ in await history_entries(redis_server.url, "room.7")] == [entry_id]


# -- durability and Redis Cluster: the producers' Publisher underneath --------------------


async def test_on_a_cluster_an_http_publish_waits_for_a_replica_and_a_retry_with_its_key_lands_once(
    redis_cluster: LocalRedisCluster, gateway_factory: Callable[..., GatewayProcess]
) -> None:
    """Routed to the channel's master, appended, acknowledged and sent live (SPUBLISH)
    only once a replica holds it; the 503 a client got meanwhile is safe to retry."""
    channel = redis_cluster.channels_on_each_master()[1][0]
    master = redis_cluster.master_of(channel)
    replica = redis_cluster.replicas_of(master)[0]
    gateway = gateway_factory(
        redis_url=f"redis://{master.address}/0",
        env={**PUBLISH_ON, "SSE_PUBLISH_WAIT_TIMEOUT_MS": "100", "SSE_PUBLISH_TIMEOUT": "1"},
    )
    base = gateway.base_url
    async with listening(master, [channel]) as live:
        warm = published_id(
            await asyncio.to_thread(post_event, base, channel, "echo", {"message": "warm"})
        )
        replica.pause()  # it can no longer confirm anything
        try:
            held = await asyncio.to_thread(
                post_event, base, channel, "echo", {"message": "held"}, key="held-1"
            )
            assert held.status_code == 503, held.text
            assert held.json()["error"]["code"] == "publish_unavailable"
            assert "same Idempotency-Key" in held.json()["error"]["hint"]
            assert held.headers["Retry-After"] == "1"
            assert [m.id.decode() for m in live[channel]] == [warm], "sent live unconfirmed"
        finally:
            replica.resume()
        retried = published_id(
            await asyncio.to_thread(
                post_event, base, channel, "echo", {"message": "held"}, key="held-1"
            )
        )
        messages = await wait_for_live(live, channel, 2)

    with master.client() as client:
        entries = client.xrange(KEYS.history_key(channel))
    assert [i.decode() for i, _ in entries] == [warm, retried], "appended once, on its master"
    assert [m.id.decode() for m in messages] == [warm, retried]
    with replica.client() as client:
        client.execute_command("READONLY")
        assert client.xlen(KEYS.history_key(channel)) == 2


# -- hostile input at scale: schemathesis against the documented route -------------------

PUBLISH_SCHEMA = schemathesis.openapi.from_dict(create_app(GatewaySettings()).openapi())


@pytest.fixture(scope="module")
def fuzzed_gateway() -> Iterator[GatewayProcess]:
    with standalone_gateway({**PUBLISH_ON, "SSE_PUBLISH_MAX_BODY_BYTES": "2048"}) as (gateway, _):
        yield gateway


@PUBLISH_SCHEMA.include(path="/channels/{channel}/events", method="POST").parametrize()
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_fuzzed_publish_requests_get_documented_answers_and_never_a_5xx(
    case: schemathesis.Case, fuzzed_gateway: GatewayProcess
) -> None:
    # The body's schema says "an event name and any data"; which data an event type takes
    # is in GET /events/schema, so a schema-valid body may still be refused (422).
    case.call_and_validate(
        base_url=fuzzed_gateway.base_url, timeout=20, excluded_checks=[positive_data_acceptance]
    )


# -- slow bodies, and a Redis that refuses -----------------------------------------------


async def test_a_body_that_trickles_in_is_a_408_and_writes_nothing(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    gateway = gateway_factory(env={**PUBLISH_ON, "SSE_PUBLISH_TIMEOUT": "1"})
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(
            b"POST /channels/echo/events HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + GOOD[:10]
        )  # ...and the other 90 bytes never come
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=20)
        body = await asyncio.wait_for(reader.read(4096), timeout=20)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 408 "), head
    error = json.loads(body)["error"]
    assert error["code"] == "body_timeout"
    assert "within 1 s (10 bytes came)" in error["message"]
    assert await history_entries(redis_url, "echo") == []


async def test_a_publish_redis_refuses_is_a_503_that_says_why(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    gateway = gateway_factory(env=PUBLISH_ON)
    async with Redis.from_url(redis_url) as redis:
        await redis.config_set("maxmemory", "1")  # every write is refused: OOM
        try:
            response = await asyncio.to_thread(
                post_event, gateway.base_url, "echo", "echo", {"message": "x"}
            )
        finally:
            await redis.config_set("maxmemory", "0")
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "publish_unavailable"
    assert "Redis refused the publish" in error["message"]
    assert "maxmemory" in error["message"]
    # Redis takes writes again: so does the gateway.
    published_id(
        await asyncio.to_thread(post_event, gateway.base_url, "echo", "echo", {"message": "y"})
    )


# -- a page on another origin --------------------------------------------------------------


@pytest.mark.parametrize(("publish_on", "allowed"), [(True, True), (False, False)])
def test_cross_origin_pages_may_post_events_only_where_http_publish_is_on(
    gateway_factory: Callable[..., GatewayProcess], publish_on: bool, allowed: bool
) -> None:
    origin = "https://app.example.com"
    env = {"SSE_CORS_ORIGINS": origin, **(PUBLISH_ON if publish_on else {})}
    gateway = gateway_factory(env=env)
    preflight = httpx.options(
        publish_url(gateway.base_url, "echo"),
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, idempotency-key, authorization",
        },
        timeout=10,
    )
    if not allowed:
        assert preflight.status_code == 400
        assert preflight.json()["error"]["code"] == "cors_rejected"
        return
    assert preflight.status_code == 200, preflight.text
    assert "POST" in preflight.headers["access-control-allow-methods"]
    headers = {
        h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")
    }
    assert {"content-type", "idempotency-key", "authorization"} <= headers
    posted = httpx.post(
        publish_url(gateway.base_url, "echo"),
        json={"event": "echo", "data": {"message": "from a page"}},
        headers={"Origin": origin},
        timeout=10,
    )
    assert posted.status_code == 201
    assert posted.headers["access-control-allow-origin"] == origin
