"""uvicorn's request cycle for streams, with the response head formatted once, not per stream.

uvicorn's ``send`` of ``http.response.start`` joins the server's default headers
(``date``, ``server``) with the response's, checks every name and value against two
regular expressions and formats the lines: the same bytes for every stream of the
same second. ``StreamCycle`` lets uvicorn format a head once and writes the same
bytes again while the inputs are the same: the same default-header list (uvicorn
replaces it when the second changes), status, keep-alive and response headers.
An access-logged response, or one whose writes have to wait, takes uvicorn's way.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class _Capture:
    """Stands in for the transport while uvicorn formats a head: keeps what it writes."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class _FormattedHead:
    """A head as uvicorn formatted it, with what it concluded from the headers."""

    __slots__ = (
        "chunked",
        "content_length",
        "data",
        "default_headers",
        "headers",
        "keep_alive_after",
        "status",
    )

    def __init__(
        self, cycle: RequestResponseCycle, status: int, headers: list[Any], data: bytes
    ) -> None:
        self.default_headers = cycle.default_headers
        self.status = status
        self.headers = headers
        self.data = data
        self.chunked = cycle.chunked_encoding
        self.content_length = cycle.expected_content_length
        self.keep_alive_after = cycle.keep_alive


class StreamCycle(RequestResponseCycle):
    """``RequestResponseCycle`` that writes a head it formatted before without formatting it."""

    _last: _FormattedHead | None = None
    """The head formatted last (for the whole process: every stream's is the same)."""

    parked = False
    """Set when the response's task ended with the stream still open (``FastPath.park``):
    a task of the gateway's own finishes the response."""

    async def send(self, message: Any) -> None:
        if self.response_started or message["type"] != "http.response.start":
            await super().send(message)
            return
        if self.access_log or self.disconnected or self.flow.write_paused:
            await super().send(message)
            return
        status, headers = message["status"], message.get("headers", [])
        last = StreamCycle._last
        if (
            last is not None
            and last.default_headers is self.default_headers
            and last.status == status
            and self.keep_alive
            and last.headers == headers
            and self.scope["method"] == "GET"
        ):
            self.response_started = True
            self.waiting_for_100_continue = False
            self.chunked_encoding = last.chunked
            self.expected_content_length = last.content_length
            self.keep_alive = last.keep_alive_after
            self.transport.write(last.data)
            return
        transport, capture = self.transport, _Capture()
        self.transport = capture  # type: ignore[assignment]
        try:
            keep_alive = self.keep_alive
            await super().send(message)
        finally:
            self.transport = transport
        if keep_alive and self.scope["method"] == "GET":
            StreamCycle._last = _FormattedHead(self, status, list(headers), capture.data)
        transport.write(capture.data)
