"""The load generator's connections: non-blocking sockets in two epoll sets.

A ``Stream`` is one SSE request on its own socket. ``ConnectionSets`` owns the
sockets and moves each through connect, request, response head and body:

- the *prompt* set holds handshakes and sampled streams; its epoll fd is
  watched by the event loop, so they are read as soon as bytes arrive;
- the *bulk* set holds the other open streams; ``poll_bulk`` reads all ready
  ones at once, so a read carries the events of a whole poll interval.

Counted streams are not de-chunked: servers write whole frames per chunk, so
a marker never straddles chunk framing (a split would show up as a loss, and
the sampled streams, which are de-chunked and parsed, check every sequence).
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import time
from collections.abc import Callable

from bench.sse_wire import Dechunker, EventParser, MarkerCounter, ProtocolError, ResponseHead

HEAD_LIMIT = 16_384
READ_SIZE = 65_536
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux: the kernel stamps each received packet (CLOCK_REALTIME) for ``recvmsg``."""
_TIMESPEC = struct.Struct("@qq")
_LINGER_RST = struct.pack("ii", 1, 0)
_IN = select.EPOLLIN
_OUT = select.EPOLLOUT


class Stream:
    """One SSE connection and what it has received."""

    __slots__ = (
        "_head_buffer",
        "arrived_at",
        "bulk",
        "closed",
        "counter",
        "dechunker",
        "done_at",
        "error",
        "fd",
        "head",
        "on_open",
        "parser",
        "settled",
        "settled_at",
        "sock",
        "writing",
    )

    def __init__(
        self,
        sock: socket.socket,
        marker: bytes,
        sample: bool,
        on_open: Callable[[Stream], None],
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.head: ResponseHead | None = None
        self.counter = MarkerCounter(marker)
        self.parser = EventParser() if sample else None
        self.dechunker: Dechunker | None = None
        self.on_open = on_open
        self.done_at: float | None = None
        self.closed = False
        self.error: str | None = None
        self.settled = False
        """The handshake ended: the stream is open, or failed."""
        self.settled_at = 0.0
        self.writing = True
        self.bulk = False
        self.arrived_at: float | None = None
        """When the bytes being parsed reached the socket (the kernel's stamp), if known."""
        self._head_buffer = b""

    @property
    def count(self) -> int:
        return self.counter.count


class ConnectionSets:
    """Every stream's socket, in the prompt or the bulk epoll set."""

    def __init__(
        self,
        *,
        address: tuple[str, int],
        request: bytes,
        marker: bytes,
        ready_on_body: bool,
        on_events: Callable[[Stream, float], None],
        on_closed: Callable[[Stream], None],
    ) -> None:
        self._address = address
        self._request = request
        self._marker = marker
        self._ready_on_body = ready_on_body
        self._on_events = on_events
        self._on_closed = on_closed
        self._prompt = select.epoll()
        self._bulk = select.epoll()
        self._by_fd: dict[int, Stream] = {}
        self._in_bulk = 0

    @property
    def prompt_fd(self) -> int:
        """Readable whenever a prompt stream has something: watch it from the event loop."""
        return self._prompt.fileno()

    def open(self, *, sample: bool, on_open: Callable[[Stream], None]) -> Stream:
        """Start connecting a new stream; ``on_open`` runs once its handshake has ended."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        stream = Stream(sock, self._marker, sample, on_open)
        if sample:
            # Latency is taken when the bytes reached the socket, not when this busy
            # process got round to reading them.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        code = sock.connect_ex(self._address)
        if code not in (0, errno.EINPROGRESS):
            self.fail(stream, f"connect: {errno.errorcode.get(code, code)}")
            return stream
        self._by_fd[stream.fd] = stream
        self._prompt.register(stream.fd, _OUT)
        return stream

    # -- reading -------------------------------------------------------------

    def poll_prompt(self) -> None:
        for fd, mask in self._prompt.poll(0, max(1, len(self._by_fd))):
            stream = self._by_fd.get(fd)
            if stream is None:
                continue
            if stream.writing:
                self._send_request(stream)
            elif mask:
                self._read(stream, sample=stream.parser is not None)

    def poll_bulk(self) -> None:
        if not self._in_bulk:
            return
        by_fd, read = self._by_fd, self._read_counted
        for fd, _ in self._bulk.poll(0, self._in_bulk):
            stream = by_fd.get(fd)
            if stream is not None:
                read(stream)

    def _send_request(self, stream: Stream) -> None:
        code = stream.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self.fail(stream, f"connect: {errno.errorcode.get(code, code)}")
            return
        try:
            sent = stream.sock.send(self._request)
        except OSError as exc:
            self.fail(stream, f"send: {exc}")
            return
        if sent != len(self._request):
            self.fail(stream, "request did not fit in one send")
            return
        stream.writing = False
        self._prompt.modify(stream.fd, _IN)

    def _recv(self, stream: Stream) -> bytes | None:
        """The bytes waiting on ``stream``; None when there were none or it closed."""
        try:
            data = stream.sock.recv(READ_SIZE)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._lost(stream, f"recv: {exc}")
            return None
        if not data:
            self._lost(stream, None)
            return None
        return data

    def _read_counted(self, stream: Stream) -> None:
        data = self._recv(stream)
        if data is not None and stream.counter.feed(data):
            self._on_events(stream, time.monotonic())

    def _recv_stamped(self, stream: Stream) -> bytes | None:
        """Like ``_recv``; also sets ``stream.arrived_at`` from the kernel's receive stamp."""
        try:
            data, ancillary, _, _ = stream.sock.recvmsg(READ_SIZE, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return None
        except OSError as exc:
            self._lost(stream, f"recv: {exc}")
            return None
        if not data:
            self._lost(stream, None)
            return None
        stream.arrived_at = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                seconds, nanos = _TIMESPEC.unpack_from(payload)
                stream.arrived_at = seconds + nanos / 1e9
        return data

    def _read(self, stream: Stream, *, sample: bool) -> None:
        data = self._recv_stamped(stream) if sample else self._recv(stream)
        if data is None:
            return
        if stream.head is None:
            data = self._read_head(stream, data)
            if not data:
                return
        try:
            if stream.dechunker is not None:
                stream.dechunker.feed(data)
            else:
                self._body(stream, data)
        except ProtocolError as exc:
            self.fail(stream, str(exc))

    def _read_head(self, stream: Stream, data: bytes) -> bytes:
        buffer = stream._head_buffer + data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            stream._head_buffer = buffer
            if len(buffer) > HEAD_LIMIT:
                self.fail(stream, "response head too long")
            return b""
        stream._head_buffer = b""
        try:
            stream.head = ResponseHead.parse(buffer[:end])
        except (ProtocolError, ValueError) as exc:
            self.fail(stream, str(exc))
            return b""
        if stream.head.status != 200:
            self.fail(stream, f"HTTP {stream.head.status}: {buffer[end + 4 : end + 300]!r}")
            return b""
        if stream.head.chunked and stream.parser is not None:
            stream.dechunker = Dechunker(lambda piece: self._body(stream, piece))
        if not self._ready_on_body:
            self._settle(stream)
        return buffer[end + 4 :]

    def _body(self, stream: Stream, piece: bytes) -> None:
        if not stream.settled:
            self._settle(stream)
        if stream.parser is not None:
            stream.parser.feed(piece, stream.arrived_at)
        if stream.counter.feed(piece):
            self._on_events(stream, time.monotonic())

    def _settle(self, stream: Stream) -> None:
        stream.settled = True
        stream.settled_at = time.monotonic()
        if stream.error is None and stream.parser is None and not stream.closed:
            # Open and counted only: from now on it is read in bulk.
            self._prompt.unregister(stream.fd)
            self._bulk.register(stream.fd, _IN)
            stream.bulk = True
            self._in_bulk += 1
        stream.on_open(stream)

    # -- closing -------------------------------------------------------------

    def _lost(self, stream: Stream, reason: str | None) -> None:
        """The server closed the stream (or reset it)."""
        if stream.head is None and stream.error is None:
            stream.error = f"closed before the response head: {reason or 'EOF'}"
        self._close(stream, reset=False)
        self._on_closed(stream)

    def fail(self, stream: Stream, reason: str) -> None:
        """Give up on a stream: record why and reset it."""
        if stream.error is None:
            stream.error = reason
        self._close(stream, reset=True)

    def _close(self, stream: Stream, *, reset: bool) -> None:
        if stream.closed:
            return
        stream.closed = True
        self._by_fd.pop(stream.fd, None)
        if stream.bulk:
            stream.bulk = False
            self._in_bulk -= 1
        if reset:
            # RST: the port is free at once instead of sitting in TIME_WAIT.
            with contextlib.suppress(OSError):
                stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        stream.sock.close()  # closing the fd also drops it from its epoll set
        if not stream.settled:
            stream.settled = True
            stream.settled_at = time.monotonic()
            stream.on_open(stream)

    def close_all(self) -> None:
        for stream in list(self._by_fd.values()):
            self._close(stream, reset=True)
        self._prompt.close()
        self._bulk.close()
