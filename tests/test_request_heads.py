"""Request heads are bounded in size and time, and so are connections that are not streams yet.

httptools, which the fast path's protocol runs on, has none of h11's limits: a 64 MB header
was accepted, a half-sent request line held its connection forever, and idle
connections could take every descriptor the process may open. The fast path refuses a
head over ``SSE_MAX_HEADER_BYTES`` with a 431 (the gateway's JSON error), closes a
connection whose head is not complete ``SSE_HEADER_TIMEOUT`` seconds after it opened
(408), and keeps at most ``SSE_MAX_WAITING_CONNECTIONS`` connections waiting for a head
(the oldest is dropped for a new one), never more than half the descriptors it may
open. The stock path under h11 has h11's size limit, set from the same setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
from collections.abc import Callable

import pytest

from tests.support.paths import H11
from tests.support.processes import GatewayProcess
from tests.support.stalled import GatewayFootprint, healthz_seconds

GatewayFactory = Callable[..., GatewayProcess]
MIB = 2**20


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def status_and_error(response: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)["error"]


def head_with_header(size: int) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * size + b"\r\n\r\n"


def test_a_request_head_over_the_limit_is_a_431_with_a_json_error(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(env={"SSE_MAX_HEADER_BYTES": "8192"})
    with connect(gateway.port) as sock:
        sock.sendall(head_with_header(9000))
        status, error = status_and_error(read_all(sock))
    assert status == 431
    assert error["code"] == "request_head_too_large"
    assert "8192 bytes" in error["message"]
    assert "SSE_MAX_HEADER_BYTES" in error["hint"]
    # A head within the limit is served as before.
    with connect(gateway.port) as sock:
        sock.sendall(head_with_header(4000)[:-2] + b"Connection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200 ")


async def send_forever(port: int, chunk: bytes, count: int) -> bool:
    """Send ``count`` chunks of a never-ending header; True if the server cut it off."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ")
        for _ in range(count):
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), 10)
        return False
    except (ConnectionError, TimeoutError):
        return True
    finally:
        writer.close()


async def test_oversized_heads_are_cut_off_without_holding_their_bytes(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory()
    footprint = GatewayFootprint.of(gateway.pid)
    baseline = footprint.rss
    # 20 clients each start a 32 MB header; the gateway holds at most 64 KB of each.
    sending = [asyncio.create_task(send_forever(gateway.port, b"a" * MIB, 32)) for _ in range(20)]
    peak = baseline
    while not all(task.done() for task in sending):
        peak = max(peak, footprint.rss)
        await asyncio.wait(sending, timeout=0.05)
    assert all(await asyncio.gather(*sending)), "a 32 MB header was taken in full"
    growth = peak - baseline
    print(f"\n20 x 32 MB headers: gateway RSS +{growth / MIB:.1f} MiB")
    assert growth < 16 * MIB


def closed_within(sock: socket.socket, timeout: float) -> float:
    """Seconds until the server closes ``sock`` (fails after ``timeout``)."""
    started = time.monotonic()
    read_all(sock, timeout)
    elapsed = time.monotonic() - started
    assert elapsed < timeout, "the connection is still open"
    return elapsed


def test_a_request_head_not_complete_in_time_is_closed(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(env={"SSE_HEADER_TIMEOUT": "1"})
    with connect(gateway.port) as silent, connect(gateway.port) as half:
        half.sendall(b"GET /sse?chan")
        assert closed_within(silent, timeout=6) >= 0.5
        assert closed_within(half, timeout=6) >= 0


def test_a_slowloris_head_is_closed_at_the_timeout_however_it_trickles(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(env={"SSE_HEADER_TIMEOUT": "1"})
    started = time.monotonic()
    response = b""
    with connect(gateway.port) as sock:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100:
            assert time.monotonic() - started < 6, "a trickling head was never cut off"
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                response = read_all(sock)
                break
            try:
                sock.sendall(bytes([byte]))
            except ConnectionError:
                break
    assert time.monotonic() - started < 6
    assert response == b"" or response.startswith(b"HTTP/1.1 408 "), response[:200]


async def test_idle_connections_at_the_fd_limit_do_not_lock_out_healthz(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(open_files=256)
    idle = []
    try:
        for _ in range(300):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", gateway.port))
            idle.append(sock)
        # The gateway drops the oldest waiting connections for new ones: a health check
        # still gets through, and the process keeps descriptors to spare.
        assert await healthz_seconds(gateway.base_url, timeout=10) < 5
        assert GatewayFootprint.of(gateway.pid).fds < 256
    finally:
        for sock in idle:
            sock.close()
    assert await healthz_seconds(gateway.base_url) < 1


@pytest.mark.parametrize("stream_path", [H11], ids=["h11"])
def test_the_stock_h11_path_has_h11s_head_limit_from_the_same_setting(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = gateway_factory(env={"SSE_MAX_HEADER_BYTES": "8192"})
    head = head_with_header(20_000)
    with connect(gateway.port) as sock:
        # h11 checks the size of an incomplete head: send it in two parts.
        sock.sendall(head[:10_000])
        time.sleep(0.5)
        with contextlib.suppress(ConnectionError):
            sock.sendall(head[10_000:])
        response = read_all(sock)
    assert response.startswith(b"HTTP/1.1 400 "), response[:200]
