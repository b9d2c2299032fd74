"""The history API: ``GET /channels/{channel}/history`` pages a channel's history as JSON.

Forwards from a position (``after``), back from one (``before``), or the newest entries;
each page in publish order with ``has_more``, the channel's tip and the cursor that
resumes a stream right after it. Same auth as subscribing; bad positions and limits are
4xx that say why.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from redis.asyncio import Redis

from contract.backoff import Backoff
from contract.events import Echo, EchoPayload
from contract.wire import Keyspace
from gateway.broker import HistoryReader, Page, RedisBroker
from gateway.metrics import Metrics
from producers.publisher import Publisher
from tests.support.assertions import numbered, publish_numbered
from tests.support.processes import GatewayProcess
from tests.support.redis_server import RedisServer
from tests.support.sse import sse_connect
from tests.support.standalone import standalone_gateway

KEYS = Keyspace()
SECRET = "a-test-secret-of-at-least-thirty-two-bytes"
LARGEST_ID = f"{2**64 - 1}-{2**64 - 1}"


def history(gateway: GatewayProcess, channel: str = "echo", **query: Any) -> httpx.Response:
    return httpx.get(f"{gateway.base_url}/channels/{channel}/history", params=query, timeout=20)


def page(gateway: GatewayProcess, channel: str = "echo", **query: Any) -> dict[str, Any]:
    response = history(gateway, channel, **query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [entry["id"] for entry in body["entries"]]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GatewayProcess, RedisServer]]:
    """One gateway for the read-only tests; each test uses channels of its own."""
    with standalone_gateway() as started:
        yield started


async def publish(redis_url: str, channel: str, count: int, start: int = 0) -> list[str]:
    async with Publisher.from_url(redis_url) as publisher:
        return await publish_numbered(publisher, channel, range(start, start + count))


async def test_the_newest_page_holds_whole_entries_in_publish_order(
    served: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, redis_server = served
    published = await publish(redis_server.url, "newest", 5)
    body = await asyncio.to_thread(page, gateway, "newest")

    assert ids(body) == published
    assert [entry["prev"] for entry in body["entries"]] == ["0-0", *published[:-1]]
    assert {entry["event"] for entry in body["entries"]} == {"echo"}
    assert [entry["data"]["message"] for entry in body["entries"]] == numbered(5)
    async with Redis.from_url(redis_server.url) as redis:
        stored = await redis.xrange(KEYS.history_key("newest"))
    # The data is the published JSON, as JSON (not a string of it).
    assert [entry["data"] for entry in body["entries"]] == [json.loads(f[b"d"]) for _, f in stored]
    assert body["channel"] == "newest"
    assert body["has_more"] is False
    assert body["tip"] == published[-1]
    assert body["cursor"] == f"newest={published[-1]}"


async def test_paging_back_and_forth_covers_the_history_once(
    served: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, redis_server = served
    published = await publish(redis_server.url, "pages", 7)

    back: list[str] = []
    body = await asyncio.to_thread(page, gateway, "pages", limit=3)
    pages_back = [(ids(body), body["has_more"])]
    while body["has_more"]:
        body = await asyncio.to_thread(page, gateway, "pages", limit=3, before=ids(body)[0])
        pages_back.append((ids(body), body["has_more"]))
    for entries, _ in reversed(pages_back):
        back += entries
    assert pages_back == [
        (published[4:7], True),
        (published[1:4], True),
        (published[0:1], False),
    ]
    assert back == published

    forward: list[str] = []
    position = "earliest"
    while True:
        body = await asyncio.to_thread(page, gateway, "pages", limit=3, after=position)
        forward += ids(body)
        if not body["has_more"]:
            break
        position = ids(body)[-1]
    assert forward == published
    assert body["cursor"] == f"pages={published[-1]}"
    after_all = await asyncio.to_thread(page, gateway, "pages", after=published[-1])
    assert (after_all["entries"], after_all["has_more"], after_all["cursor"]) == ([], False, None)


async def test_after_and_before_together_page_through_the_range_between(
    served: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, redis_server = served
    published = await publish(redis_server.url, "range", 8)
    start, end = published[1], published[6]
    first = await asyncio.to_thread(page, gateway, "range", after=start, before=end, limit=3)
    assert (ids(first), first["has_more"]) == (published[2:5], True)
    rest = await asyncio.to_thread(page, gateway, "range", after=published[4], before=end, limit=3)
    assert (ids(rest), rest["has_more"]) == (published[5:6], False)


async def test_a_stream_from_the_page_cursor_continues_exactly_after_the_page(
    served: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, redis_server = served
    await publish(redis_server.url, "chat", 4)
    latest = await asyncio.to_thread(page, gateway, "chat", limit=2)
    later = await publish(redis_server.url, "chat", 3, start=4)
    async with sse_connect(
        gateway.base_url, ["chat"], query_last_event_id=latest["cursor"]
    ) as stream:
        frames = await stream.take(3, timeout=10)
    assert [json.loads(f.data)["message"] for f in frames] == numbered(3, start=4)
    assert frames[-1].id == f"chat={later[-1]}"


async def test_entries_whose_predecessor_is_not_the_previous_one_show_a_trimmed_gap(
    served: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, redis_server = served
    async with Publisher.from_url(redis_server.url) as publisher:
        first = await publisher.publish("trimmed", Echo(data=EchoPayload(message="gone")))
        await publish_numbered(publisher, "trimmed", range(3))
    async with Redis.from_url(redis_server.url) as redis:
        await redis.xtrim(KEYS.history_key("trimmed"), maxlen=2, approximate=False)
    body = await asyncio.to_thread(page, gateway, "trimmed", after=first)
    # The first entry after the position does not link to it: one entry in between is gone.
    assert body["entries"][0]["prev"] != first
    assert [e["data"]["message"] for e in body["entries"]] == ["msg-1", "msg-2"]


async def test_an_empty_channel_and_the_ends_of_the_id_range_are_empty_pages(
    served: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, redis_server = served
    empty = await asyncio.to_thread(page, gateway, "nothing-yet")
    assert empty == {
        "channel": "nothing-yet",
        "entries": [],
        "has_more": False,
        "tip": "0-0",
        "cursor": None,
    }
    await publish(redis_server.url, "ends", 2)
    beyond = f"{2**64 + 5}-0"  # past Redis's largest id: read as that largest
    for query in ({"after": LARGEST_ID}, {"after": beyond}, {"before": "0-0"}, {"before": "0"}):
        body = await asyncio.to_thread(page, gateway, "ends", **query)
        assert (body["entries"], body["has_more"]) == ([], False), query


async def test_stored_data_that_is_not_json_is_returned_as_text_and_flagged(
    served: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, redis_server = served
    async with Redis.from_url(redis_server.url) as redis:
        await redis.xadd(KEYS.history_key("raw"), {"e": "echo", "d": "not json", "p": "0-0"})
    (entry,) = (await asyncio.to_thread(page, gateway, "raw"))["entries"]
    assert (entry["data"], entry["malformed"]) == ("not json", True)


@pytest.mark.parametrize(
    ("query", "status", "code", "says"),
    [
        pytest.param(
            {"after": "yesterday"}, 400, "invalid_history_query", "'after'", id="bad after"
        ),
        pytest.param(
            {"before": "1-2-3"}, 400, "invalid_history_query", "'before'", id="bad before"
        ),
        pytest.param(
            {"before": "earliest"},
            400,
            "invalid_history_query",
            "'before'",
            id="earliest as before",
        ),
        pytest.param({"limit": "0"}, 422, "invalid_parameter", "limit", id="limit 0"),
        pytest.param({"limit": "1001"}, 422, "invalid_parameter", "limit", id="limit over 1000"),
        pytest.param({"limit": "ten"}, 422, "invalid_parameter", "limit", id="limit not a number"),
        pytest.param(
            [("after", "1-0"), ("after", "2-0")],
            400,
            "repeated_parameter",
            "'after'",
            id="after twice",
        ),
    ],
)
def test_bad_history_queries_get_a_clear_4xx(
    served: tuple[GatewayProcess, RedisServer],
    query: Any,
    status: int,
    code: str,
    says: str,
) -> None:
    gateway, _ = served
    response = httpx.get(f"{gateway.base_url}/channels/echo/history", params=query, timeout=20)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["code"], says in error["message"], bool(error["hint"])) == (code, True, True)


def test_a_bad_channel_name_is_a_400_naming_it(
    served: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, _ = served
    response = history(gateway, "bad%7Bname%7D")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_channel"
    assert "bad{name}" in response.json()["error"]["message"]


def test_history_needs_the_same_token_as_subscribing() -> None:
    with standalone_gateway({"SSE_AUTH_HS256_SECRET": SECRET}) as (gateway, _):
        reader = jwt.encode({"exp": time.time() + 60, "channels": ["room.*"]}, SECRET, "HS256")
        assert history(gateway, "room.1").json()["error"]["code"] == "token_missing"
        assert history(gateway, "room.1", token="nonsense").json()["error"]["code"] == (
            "token_invalid"
        )
        refused = history(gateway, "echo", token=reader)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "channel_forbidden")
        assert history(gateway, "room.1", token=reader).status_code == 200
        by_header = httpx.get(
            f"{gateway.base_url}/channels/room.1/history",
            headers={"Authorization": f"Bearer {reader}"},
            timeout=20,
        )
        assert by_header.status_code == 200


async def test_concurrent_identical_reads_back_share_one_redis_read(redis_url: str) -> None:
    """A crowd of pages opening on a channel's latest entries costs one read."""
    broker = RedisBroker(redis_url, KEYS, backoff=Backoff())
    reads = 0
    read_page_before = broker.read_page_before

    async def counted(channel: str, before: bytes | None, count: int) -> Page:
        nonlocal reads
        reads += 1
        return await read_page_before(channel, before, count)

    broker.read_page_before = counted  # type: ignore[method-assign]
    metrics = Metrics()
    reader = HistoryReader(broker, cache_pages=0, cache_bytes=0, metrics=metrics)
    published = await publish(redis_url, "crowd", 3)
    try:
        pages = await asyncio.gather(*(reader.read_before("crowd", None, 2) for _ in range(50)))
        again = await reader.read_before("crowd", None, 2)
    finally:
        await reader.aclose()
        await broker.aclose()
    assert {tuple(e.id.decode() for e in p.entries) for p in pages} == {tuple(published[1:])}
    assert reads == 2, "50 concurrent reads share one; a later one reads again (not cached)"
    assert (metrics.history_pages["redis"], metrics.history_pages["shared"]) == (2, 49)
    assert [e.id.decode() for e in again.entries] == published[1:]


async def test_a_page_of_large_events_stops_at_4_mb_and_says_more_follow(
    served: tuple[GatewayProcess, RedisServer],
) -> None:
    gateway, redis_server = served
    big = json.dumps({"message": "x" * 1_000_000}).encode()
    async with Publisher.from_url(redis_server.url) as publisher:
        published = [await publisher.publish_raw("big", "echo", big) for _ in range(6)]
    newest = await asyncio.to_thread(page, gateway, "big", limit=10)
    assert (ids(newest), newest["has_more"]) == (published[2:], True)  # the nearest four
    back = await asyncio.to_thread(page, gateway, "big", limit=10, before=published[2])
    assert (ids(back), back["has_more"]) == (published[:2], False)
    forward = await asyncio.to_thread(page, gateway, "big", limit=10, after="earliest")
    assert (ids(forward), forward["has_more"]) == (published[:4], True)
