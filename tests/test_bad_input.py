"""Bad input gets a clear error: 4xx JSON for requests, one line for CLIs; bad cursors
open the stream anyway (EventSource would give up for good after an HTTP error)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.processes import run_cli
from tests.support.sse import sse_connect


def get(gateway, path: str) -> httpx.Response:
    return httpx.get(gateway.base_url + path, timeout=10)


def test_no_channel_is_a_400_that_says_how_to_ask(gateway) -> None:
    response = get(gateway, "/sse")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "no_channels"
    assert "channel=" in error["hint"]


def test_an_invalid_channel_name_is_a_400_naming_it(gateway) -> None:
    response = get(gateway, "/sse?channel=echo&channel=bad%7Bname%7D")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_channel"
    assert "bad{name}" in error["message"]


def test_too_many_channels_is_a_400_with_the_limit(gateway) -> None:
    query = "&".join(f"channel=c{i}" for i in range(17))
    response = get(gateway, f"/sse?{query}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "too_many_channels"
    assert "at most 16" in error["message"]


def test_unknown_route_is_a_json_404(gateway) -> None:
    response = get(gateway, "/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "cursor", ["garbage", "echo=not-an-id", "echo=1-0,echo=2-0", "x" * 5000, "bad chan=1-0"]
)
async def test_a_malformed_last_event_id_opens_the_stream_and_says_so(gateway, cursor: str) -> None:
    async with sse_connect(gateway.base_url, channels=["echo"], last_event_id=cursor) as stream:
        assert stream.response.status_code == 200
        notice = (await stream.take(1, timeout=10))[0]
    assert notice.event == "cursor_invalid"
    payload = json.loads(notice.data)
    assert payload["starting_from"] == "live"
    assert payload["reason"]
    assert len(payload["value"]) <= 80


@pytest.mark.parametrize(
    ("module", "args", "env", "expected"),
    [
        ("gateway", ["--port", "99999"], {}, "not a port number"),
        ("gateway", ["--workers", "0"], {}, "at least 1"),
        ("gateway", ["--worker-healthcheck-timeout", "0"], {}, "at least 1"),
        ("gateway", ["--worker-healthcheck-timeout", "soon"], {}, "not a whole number"),
        ("gateway", [], {"REDIS_URL": "http://nope"}, "invalid REDIS_URL"),
        ("gateway", [], {"SSE_PING_INTERVAL": "-1"}, "SSE_PING_INTERVAL"),
        ("producers", ["echo", "--count", "0"], {}, "at least 1"),
        ("producers", ["echo", "--interval", "soon"], {}, "not a number"),
        ("producers", ["echo", "--channel", "a b"], {}, "invalid channel name"),
        ("producers", ["echo"], {"REDIS_URL": "ftp://x"}, "invalid REDIS_URL"),
        ("producers", ["shout"], {}, "invalid choice"),
        ("producers", ["echo"], {"REDIS_URL": "redis://a:1,,b:2"}, "invalid REDIS_URL"),
        ("producers", ["echo"], {"REDIS_URL": "redis://a:1/2,b:2"}, "only database 0"),
        ("producers", ["echo"], {"SSE_REDIS_MODE": "sharded"}, "invalid SSE_REDIS_MODE"),
        (
            "producers",
            ["echo"],
            {"REDIS_URL": "redis://a:1,redis://b:2", "SSE_REDIS_MODE": "standalone"},
            "takes one REDIS_URL",
        ),
        ("producers", ["echo"], {"SSE_PUBLISH_REPLICAS": "-1"}, "SSE_PUBLISH_REPLICAS"),
    ],
)
def test_bad_command_lines_get_one_line_errors_not_tracebacks(
    module: str, args: list[str], env: dict[str, str], expected: str
) -> None:
    result = run_cli(module, *args, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
