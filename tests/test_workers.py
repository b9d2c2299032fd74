"""``python -m gateway --workers 2``: two processes behind one socket, one stateless service.

A client that disconnects and resumes lands on whichever worker accepts the
connection; the cursor is all the state, so it gets every event exactly once either
way. On SIGTERM both workers drain their streams with the retry hint and the
supervisor exits 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.support.assertions import (
    assert_cursors_never_move_backwards,
    assert_exactly,
    messages,
    numbered,
    publishing_in_background,
)
from tests.support.processes import GatewayProcess
from tests.support.raw_streams import open_many
from tests.support.sse import Frame, SSEStream, sse_connect

EVENTS = 200
EVENTS_PER_CONNECTION = 12
MAX_EXTRA_CONNECTIONS = 40
GRACE_PERIOD = 5.0
SHUTDOWN_RETRY_MS = 250


def worker_pids(gateway: GatewayProcess, timeout: float = 20) -> list[int]:
    """The supervisor's children that hold the listening socket (not its resource tracker)."""
    deadline = time.monotonic() + timeout
    while True:
        workers = [
            child.pid
            for child in psutil.Process(gateway.pid).children()
            if any(
                c.laddr and c.laddr.port == gateway.port and c.status == psutil.CONN_LISTEN
                for c in child.net_connections("tcp")
            )
        ]
        if len(workers) == 2 or time.monotonic() > deadline:
            assert len(workers) == 2, f"workers holding port {gateway.port}: {workers}"
            return sorted(workers)
        time.sleep(0.1)


def owners(workers: list[int], server_port: int) -> dict[int, int]:
    """Client port -> the worker process holding the server side of that connection."""
    return {
        conn.raddr.port: pid
        for pid in workers
        for conn in psutil.Process(pid).net_connections("tcp")
        if conn.laddr.port == server_port and conn.raddr
    }


def owner(workers: list[int], server_port: int, client_port: int) -> int:
    pid = owners(workers, server_port).get(client_port)
    assert pid is not None, f"no worker holds the connection from port {client_port}"
    return pid


def client_port(stream: SSEStream) -> int:
    port: int = stream.response.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


async def test_two_workers_serve_and_resume_each_others_streams(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    gateway = gateway_factory(workers=2)
    workers = worker_pids(gateway)
    events: list[Frame] = []
    served_by: list[int] = []
    last_id = "earliest"  # the whole history of a fresh Redis: nothing can be missed
    async with publishing_in_background(
        redis_url, ["echo"], count=EVENTS, interval=0.01
    ) as publisher:
        # Disconnect after a few events and resume with Last-Event-ID, until every event
        # has arrived and both workers have served some of the connections.
        while len(events) < EVENTS or set(served_by) != set(workers):
            assert len(served_by) < EVENTS // EVENTS_PER_CONNECTION + MAX_EXTRA_CONNECTIONS, (
                f"connections were served by {sorted(set(served_by))} only"
            )
            async with sse_connect(gateway.base_url, ["echo"], last_event_id=last_id) as stream:
                served_by.append(owner(workers, gateway.port, client_port(stream)))
                wanted = min(EVENTS_PER_CONNECTION, EVENTS - len(events))
                events += await stream.take(wanted, timeout=20)
                assert stream.last_id is not None
                last_id = stream.last_id
        await publisher

    assert_exactly(messages(events, "echo"), numbered(EVENTS))
    assert_cursors_never_move_backwards(events)
    assert set(served_by) == set(workers)


async def test_sigterm_drains_both_workers_and_exits_0(
    gateway_factory: Callable[..., GatewayProcess],
) -> None:
    gateway = gateway_factory(
        workers=2,
        env={
            "SSE_SHUTDOWN_GRACE_PERIOD": str(GRACE_PERIOD),
            "SSE_SHUTDOWN_RETRY_MS": str(SHUTDOWN_RETRY_MS),
        },
    )
    workers = worker_pids(gateway)
    streams = []
    try:
        # The kernel hands each connection to whichever worker accepts first: one worker
        # may take a whole burst. Open more until both hold some (bounded).
        for _ in range(10):
            streams += await open_many(gateway.port, [["echo"]] * 100, concurrency=20, timeout=30)
            by_port = owners(workers, gateway.port)
            holders = {
                by_port.get(stream.writer.get_extra_info("sockname")[1]) for stream in streams
            }
            if holders == set(workers):
                break
        assert holders == set(workers), "both workers hold streams"
        readers = [asyncio.create_task(stream.read_to_end()) for stream in streams]
        signalled = time.monotonic()
        gateway.signal(signal.SIGTERM)
        status = await asyncio.to_thread(gateway.wait, GRACE_PERIOD + 15)
        exited_after = time.monotonic() - signalled
        all_frames = await asyncio.wait_for(asyncio.gather(*readers), timeout=10)
    finally:
        for stream in streams:
            stream.close()

    assert status == 0, gateway.log()[-3000:]
    assert exited_after < GRACE_PERIOD, f"exited {exited_after:.1f}s after SIGTERM"
    for frames in all_frames:
        *_, hint, goodbye = frames
        assert hint.retry == SHUTDOWN_RETRY_MS
        assert goodbye.event == "reconnect"
        assert json.loads(goodbye.data)["reason"] == "shutdown"
    assert "ASGI callable returned without completing response" not in gateway.log()


SLOW_START = """\
import sys, time
# Only the workers uvicorn spawns: their start takes longer than uvicorn's own 5 s health
# check, as it did on a busy machine.
if any("spawn_main" in arg for arg in sys.orig_argv):
    time.sleep({seconds})
"""


def test_workers_that_start_slowly_are_waited_for_not_replaced(
    gateway_factory: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(SLOW_START.format(seconds=7))
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    gateway = gateway_factory(workers=2, env={"PYTHONPATH": path}, ready_timeout=120)
    assert len(worker_pids(gateway)) == 2
    assert "died" not in gateway.log(), gateway.log()
