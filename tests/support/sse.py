"""A small SSE client for tests: parses frames the way EventSource does.

A background reader (owned by the context manager, cancelled and awaited on exit) turns
the byte stream into frames; ``take`` hands them out and tracks ``last_id`` like
EventSource's lastEventId: every ``id:`` field counts, also on frames without data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

import httpx


@dataclass
class Frame:
    id: str | None = None
    event: str = "message"
    data: str = ""
    retry: int | None = None
    has_data: bool = False
    comments: list[str] = field(default_factory=list)


class StreamClosed(Exception):
    """The server ended the stream before the expected events came."""


_END = object()


class SSEStream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.last_id: str | None = None
        self.retry: int | None = None
        self.comments: list[str] = []
        self.frames: asyncio.Queue[Frame | object] = asyncio.Queue()
        self.closed = False
        self.opening: Frame | None = None
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        frame = Frame()
        data_lines: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data_lines:
                        frame.data, frame.has_data = "\n".join(data_lines), True
                    if frame.has_data or frame.id is not None or frame.retry is not None:
                        await self.frames.put(frame)
                    frame, data_lines = Frame(), []
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    self.comments.append(value)
                elif name == "id":
                    frame.id = value
                elif name == "event":
                    frame.event = value
                elif name == "data":
                    data_lines.append(value)
                elif name == "retry" and value.isdigit():
                    frame.retry = int(value)
        except (httpx.TransportError, httpx.StreamError):
            pass
        finally:
            self.frames.put_nowait(_END)

    async def next_frame(self, timeout: float) -> Frame:
        item = await asyncio.wait_for(self.frames.get(), timeout)
        if item is _END:
            self.closed = True
            self.frames.put_nowait(_END)
            raise StreamClosed("the server closed the stream")
        assert isinstance(item, Frame)
        if item.id is not None:
            self.last_id = item.id
        if item.retry is not None:
            self.retry = item.retry
        return item

    async def take(self, count: int, timeout: float) -> list[Frame]:
        """The next ``count`` events (frames with data); id/retry-only frames are absorbed."""
        events: list[Frame] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(events) < count:
            remaining = deadline - loop.time()
            try:
                frame = await self.next_frame(max(remaining, 0.001))
            except TimeoutError:
                raise AssertionError(
                    f"got {len(events)} of {count} events in {timeout}s; last: "
                    f"{[(e.event, e.data[:60]) for e in events[-3:]]}"
                ) from None
            if frame.has_data:
                events.append(frame)
        return events

    async def wait_for_opening(self, timeout: float) -> Frame:
        """The id-only frame every stream starts with: from then on the stream is live."""
        if self.opening is not None:
            return self.opening
        frame = await self.next_frame(timeout)
        assert frame.id is not None, f"the first frame has no id: {frame}"
        assert not frame.has_data, f"the first frame carries data: {frame}"
        self.opening = frame
        return frame

    async def drain(self, timeout: float) -> list[Frame]:
        """Every frame until the server closes the stream."""
        frames = []
        with contextlib.suppress(StreamClosed):
            while True:
                frames.append(await self.next_frame(timeout))
        return frames

    async def aclose(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self.response.aclose()


def sse_url(base_url: str, channels: Sequence[str], query_last_event_id: str | None = None) -> str:
    query: list[tuple[str, str]] = [("channel", c) for c in channels]
    if query_last_event_id is not None:
        query.append(("last_event_id", query_last_event_id))
    return f"{base_url}/sse?{urlencode(query)}"


@contextlib.asynccontextmanager
async def sse_connect(
    base_url: str,
    channels: Sequence[str] = ("echo",),
    *,
    last_event_id: str | None = None,
    query_last_event_id: str | None = None,
    timeout: float = 20,
    headers: dict[str, str] | None = None,
    expect_status: int = 200,
    wait_open: bool = True,
) -> AsyncIterator[SSEStream]:
    """Open a stream; by default wait for its opening frame, which the gateway sends once
    every channel is subscribed: events published after that reach the stream."""
    request_headers = {"Accept": "text/event-stream", **(headers or {})}
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = last_event_id
    url = sse_url(base_url, channels, query_last_event_id)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout, read=None)) as client:
        response = await client.send(
            client.build_request("GET", url, headers=request_headers), stream=True
        )
        if response.status_code != expect_status:
            body = await response.aread()
            await response.aclose()
            raise AssertionError(f"GET {url} -> {response.status_code}: {body[:300]!r}")
        stream = SSEStream(response)
        try:
            if wait_open:
                await stream.wait_for_opening(timeout)
            yield stream
        finally:
            await stream.aclose()
