"""HTTP/1.0 has no chunked transfer coding and no keep-alive by default: an endless SSE body
cannot be framed for it the way the gateway streams. ``GET /sse`` over HTTP/1.0 is a 505
with the gateway's JSON error and one, consistent ``connection`` header; other routes
answer HTTP/1.0 as usual."""

from __future__ import annotations

import json
import socket

import pytest

from tests.support.paths import ALL_PATHS, StreamPath
from tests.support.processes import GatewayProcess


@pytest.fixture(params=ALL_PATHS, ids=lambda path: path.name)
def stream_path(request: pytest.FixtureRequest) -> StreamPath:
    path: StreamPath = request.param
    return path


def exchange(port: int, request: bytes) -> tuple[bytes, dict[str, list[str]], bytes]:
    """Send ``request``, read until the server closes: (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return status.encode(), headers, body


def test_an_http_1_0_stream_request_is_a_505_with_consistent_headers(
    gateway: GatewayProcess,
) -> None:
    status, headers, body = exchange(gateway.port, b"GET /sse?channel=echo HTTP/1.0\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 505 "), status
    assert headers.get("connection") == ["close"], headers
    assert "transfer-encoding" not in headers
    error = json.loads(body)["error"]
    assert error["code"] == "http_version_not_supported"
    assert "HTTP/1.1" in error["hint"]


def test_other_routes_answer_http_1_0(gateway: GatewayProcess) -> None:
    status, _, body = exchange(gateway.port, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200 "), status
    assert json.loads(body) == {"status": "ok"}
