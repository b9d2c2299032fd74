"""A stream's output over plain ASGI ``send``: writes from callbacks stay in order, a write
that has to wait is finished in a task, and one that waits too long ends the stream.

(Under uvicorn the integration tests take the direct transport path; this is the path
every other server gets, and uvicorn's too while a client's socket is full.)
"""

from __future__ import annotations

import asyncio

import pytest
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message

from gateway.sse.output import StreamOutput


class Client:
    """An ASGI ``send`` whose writes wait while ``writable`` is clear (a full socket)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()

    async def send(self, message: Message) -> None:
        await self.writable.wait()
        self.received.append(message["body"])


async def test_writes_from_callbacks_go_out_at_once_while_the_client_keeps_up() -> None:
    client = Client()
    output = StreamOutput(client.send, send_timeout=5)
    assert output.write_now(b"a")
    assert output.write_now(b"b")
    assert client.received == [b"a", b"b"]
    assert output.ready


async def test_a_write_that_must_wait_is_finished_in_a_task_and_later_writes_queue_behind() -> None:
    client = Client()
    output = StreamOutput(client.send, send_timeout=5)
    client.writable.clear()
    assert output.write_now(b"first")  # accepted, in flight
    assert not output.ready
    assert not output.write_now(b"refused")  # the caller must buffer it
    later = asyncio.create_task(output.write(b"second"))
    await asyncio.sleep(0.01)
    assert client.received == []
    client.writable.set()
    await asyncio.wait_for(later, 1)
    assert client.received == [b"first", b"second"]
    assert output.ready


async def test_a_write_that_waits_past_the_send_timeout_fails_the_stream() -> None:
    client = Client()
    failed = asyncio.Event()
    output = StreamOutput(client.send, send_timeout=0.05)
    output.on_failure = failed.set
    client.writable.clear()
    assert output.write_now(b"stuck")
    await asyncio.wait_for(failed.wait(), 1)
    assert isinstance(output.error, SendTimeoutError)
    assert not output.write_now(b"more")
    with pytest.raises(SendTimeoutError):
        await output.write(b"more")
    assert client.received == []


async def test_a_send_that_fails_at_once_ends_the_stream_and_raises_in_its_task() -> None:
    async def broken(message: Message) -> None:
        raise RuntimeError("connection reset")

    ended: list[bool] = []
    output = StreamOutput(broken, send_timeout=5)
    output.on_failure = lambda: ended.append(True)
    assert output.write_now(b"x")
    assert ended == [True]
    with pytest.raises(RuntimeError, match="connection reset"):
        await output.write(b"y")
