"""Limits: open streams per process, channels per stream, cursor length, channel names.

Every limit comes from an SSE_* setting. Going over one is a 4xx/503 JSON error that names
the limit, except an over-long cursor: EventSource gives up after an HTTP error, so that is
a cursor_invalid notice on a live stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from contract.events import Echo, EchoPayload
from gateway.resume.cursor import longest_cursor
from gateway.settings import GatewaySettings
from producers.publisher import Publisher
from tests.support.assertions import messages, numbered, publish_numbered
from tests.support.processes import GatewayProcess, run_cli
from tests.support.sse import sse_connect, sse_url
from tests.support.standalone import standalone_gateway


@pytest.fixture(scope="module")
def shared_gateway() -> Iterator[GatewayProcess]:
    """Default settings, for the tests that only send requests."""
    with standalone_gateway() as (gateway, _):
        yield gateway


def get(gateway: GatewayProcess, query: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{gateway.base_url}/sse?{query}", headers=headers, timeout=10)


def assert_error(response: httpx.Response, status: int, code: str, *fragments: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["hint"], error
    for fragment in fragments:
        assert fragment in error["message"], error


def wait_until_admitted(gateway: GatewayProcess, count: int, timeout: float = 10) -> None:
    """Hold ``count`` streams open at once, retrying refused ones until the deadline."""
    deadline = time.monotonic() + timeout
    url = sse_url(gateway.base_url, ["echo"])
    with contextlib.ExitStack() as held:
        admitted = 0
        while admitted < count:
            response = held.enter_context(httpx.stream("GET", url, timeout=10))
            if response.status_code == 200:
                admitted += 1
                continue
            assert response.status_code == 503, response.read()
            assert time.monotonic() < deadline, "closed streams never gave their slots back"
            time.sleep(0.05)


async def test_streams_beyond_the_limit_get_a_503_with_retry_after(gateway_factory) -> None:
    gateway = gateway_factory(env={"SSE_MAX_STREAMS": "2"})
    async with (
        sse_connect(gateway.base_url, ["echo"]) as first,
        sse_connect(gateway.base_url, ["other"]) as second,
    ):
        await first.wait_for_opening(timeout=10)
        await second.wait_for_opening(timeout=10)
        response = await asyncio.to_thread(get, gateway, "channel=echo")
        assert_error(response, 503, "too_many_streams", "maximum of 2 streams")
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["retry-after"]) >= 1
    # Closed streams give their slots back (once the server has seen the disconnects).
    await asyncio.to_thread(wait_until_admitted, gateway, 2)


def test_refused_requests_give_their_admission_slot_back(gateway_factory) -> None:
    gateway = gateway_factory(env={"SSE_MAX_STREAMS": "1"})
    for query in ("channel=bad%20name", "channel=echo&token=a&token=b", "channel="):
        assert get(gateway, query).status_code == 400
    wait_until_admitted(gateway, 1, timeout=2)


async def test_a_burst_of_connections_never_exceeds_the_stream_limit(gateway_factory) -> None:
    gateway = gateway_factory(env={"SSE_MAX_STREAMS": "3"})
    url = sse_url(gateway.base_url, ["echo"])
    limits = httpx.Limits(max_connections=None)
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None), limits=limits) as client:
        responses = await asyncio.gather(
            *(client.send(client.build_request("GET", url), stream=True) for _ in range(12))
        )
        try:
            statuses = sorted(response.status_code for response in responses)
            open_streams: Any = (await client.get(f"{gateway.base_url}/stats")).json()
        finally:
            for response in responses:
                await response.aclose()
    assert statuses == [200] * 3 + [503] * 9
    assert open_streams["streams"]["open"] <= 3


def test_the_channel_limit_is_configurable_and_counts_distinct_channels(gateway_factory) -> None:
    gateway = gateway_factory(env={"SSE_MAX_CHANNELS": "2"})
    response = get(gateway, "channel=a&channel=b&channel=c")
    assert_error(response, 400, "too_many_channels", "3 channels requested", "at most 2")
    assert "SSE_MAX_CHANNELS" in response.json()["error"]["hint"]
    with httpx.stream(
        "GET", f"{gateway.base_url}/sse?channel=a&channel=b&channel=a", timeout=10
    ) as ok:
        assert ok.status_code == 200


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x" * 65, "at most 64"),
        ("", "empty"),
        ("{echo}", "only letters"),
        ("a=b", "only letters"),
        ("a,b", "only letters"),
        ("a b", "only letters"),
        ("caf\u00e9", "only letters"),
        ("line\nbreak", "only letters"),
        ("../../etc", "only letters"),
    ],
)
def test_a_channel_name_outside_the_policy_is_a_400_naming_it(
    shared_gateway: GatewayProcess, name: str, expected: str
) -> None:
    response = httpx.get(
        f"{shared_gateway.base_url}/sse",
        params=[("channel", "echo"), ("channel", name)],
        timeout=10,
    )
    assert_error(response, 400, "invalid_channel", expected)


@pytest.mark.parametrize("name", ["last_event_id", "token"])
def test_a_single_valued_parameter_given_twice_is_a_400(
    shared_gateway: GatewayProcess, name: str
) -> None:
    response = get(shared_gateway, f"channel=echo&{name}=a&{name}=b")
    assert_error(response, 400, "repeated_parameter", f"{name!r} is given 2 times")


def test_the_channel_pattern_setting_narrows_the_names_served(gateway_factory) -> None:
    gateway = gateway_factory(env={"SSE_CHANNEL_PATTERN": r"echo|room\.[0-9]+"})
    response = get(gateway, "channel=echo&channel=room.x")
    assert_error(response, 400, "invalid_channel", "'room.x'", "is not served here")
    assert "SSE_CHANNEL_PATTERN" in response.json()["error"]["hint"]
    with httpx.stream("GET", f"{gateway.base_url}/sse?channel=room.12", timeout=10) as ok:
        assert ok.status_code == 200


def padded_cursor(head: str, length: int) -> str:
    """``head`` plus well-formed filler channels (``aaa=1-0``), exactly ``length`` long."""
    parts = [head]
    room = length - len(head)
    while room > 0:
        room -= 1  # the comma
        size = min(64 + len("=1-0"), room)
        if 0 < room - size < 6:  # leave enough for one more ",x=1-0"
            size = room - 6
        parts.append(chr(ord("a") + len(parts)) * (size - len("=1-0")) + "=1-0")
        room -= size
    cursor = ",".join(parts)
    assert len(cursor) == length, (len(cursor), length)
    return cursor


async def test_a_cursor_at_the_length_limit_resumes(redis_url: str, gateway_factory) -> None:
    limit = longest_cursor(1)
    gateway = gateway_factory(env={"SSE_MAX_CHANNELS": "1", "SSE_MAX_CURSOR_LENGTH": str(limit)})
    async with Publisher.from_url(redis_url) as publisher:
        ids = [await publisher.publish("echo", Echo(data=EchoPayload(message=m))) for m in "abc"]
        cursor = padded_cursor(f"echo={ids[0]}", limit)
        async with sse_connect(gateway.base_url, ["echo"], last_event_id=cursor) as stream:
            events = await stream.take(2, timeout=10)
    assert messages(events, "echo") == ["b", "c"]


@pytest.mark.parametrize("where", ["header", "query"])
async def test_a_cursor_over_the_length_limit_is_a_notice_and_a_live_stream(
    redis_url: str, gateway_factory, where: str
) -> None:
    limit = longest_cursor(1)
    gateway = gateway_factory(env={"SSE_MAX_CHANNELS": "1", "SSE_MAX_CURSOR_LENGTH": str(limit)})
    async with Publisher.from_url(redis_url) as publisher:
        first = await publisher.publish("echo", Echo(data=EchoPayload(message="old")))
        cursor = padded_cursor(f"echo={first}", limit + 1)
        where_args = (
            {"last_event_id": cursor} if where == "header" else {"query_last_event_id": cursor}
        )
        async with sse_connect(gateway.base_url, ["echo"], **where_args) as stream:
            notice = (await stream.take(1, timeout=10))[0]
            await publish_numbered(publisher, "echo", range(2))
            live = await stream.take(2, timeout=10)
    assert notice.event == "cursor_invalid"
    payload = json.loads(notice.data)
    assert f"the limit is {limit}" in payload["reason"]
    assert payload["starting_from"] == "live"
    assert messages(live, "echo") == numbered(2)  # "old" is not replayed: the stream is live


async def test_a_huge_last_event_id_header_still_opens_the_stream(
    shared_gateway: GatewayProcess,
) -> None:
    async with sse_connect(shared_gateway.base_url, ["echo"], last_event_id="e" * 60_000) as stream:
        notice = (await stream.take(1, timeout=10))[0]
    assert notice.event == "cursor_invalid"
    assert len(json.loads(notice.data)["value"]) <= 80


def test_the_default_cursor_limit_holds_the_longest_cursor_of_the_default_channels() -> None:
    settings = GatewaySettings()
    assert settings.max_cursor_length >= longest_cursor(settings.max_channels)


def test_a_cursor_limit_too_short_for_the_channel_limit_stops_the_gateway() -> None:
    result = run_cli("gateway", "--port", "1", env={"SSE_MAX_CHANNELS": "64"}, inherit_env=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "SSE_MAX_CURSOR_LENGTH" in result.stderr
    assert f"at least {longest_cursor(64)}" in result.stderr
