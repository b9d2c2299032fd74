"""Recognising a plain ``GET /sse`` request head without uvicorn's parser and callbacks.

Opening a stream through uvicorn costs a protocol with a ``__dict__``, an httptools
parser, a Python callback per header and a scope built piece by piece, for a request
that is almost always the same dozen lines. ``StreamHead.parse`` accepts only the
plainest form of it: one complete head and nothing after it, ``GET /sse`` with an
optional query in visible ASCII, HTTP/1.1, header lines ``name: value`` of tokens and
visible ASCII, no body, no upgrade, no ``Expect``, no ``Connection`` but
``keep-alive``. Anything else (a bad byte, a folded line, a pipelined request,
HTTP/1.0, percent-encoding in the path) is left to uvicorn, byte for byte, so that
what it answers stays what it answered before.
"""

from __future__ import annotations

import re
from typing import NamedTuple

STREAM_REQUEST_PREFIX = b"GET /sse"
"""What every head this module accepts begins with."""

_END = b"\r\n\r\n"

# Request line: the target is /sse, optionally with a query of visible ASCII but no
# '#' (a fragment: uvicorn would drop it from the query string; leave such to it).
_REQUEST_LINE = re.compile(rb"GET /sse(?:\?([!-\"$-~]*))? HTTP/1\.1\r\n")
# One header line: an RFC 9110 token, a colon, optional blanks, then a value of
# visible ASCII with single interior blanks allowed and none at either end (what
# httptools would strip is left to httptools).
_HEADER_LINE = re.compile(
    rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*((?:[!-~](?:[ \t!-~]*[!-~])?)?)\r\n"
)

_REFUSED_HEADERS = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect"})
"""Headers that give the request a body, or ask for another protocol or for 100-continue:
uvicorn decides what they mean."""

_KEEP_ALIVE = b"keep-alive"
"""The one ``Connection`` value taken here (browsers send it); any other (``close``,
``upgrade``, a list) is uvicorn's to read."""


class StreamHead(NamedTuple):
    """A plain ``GET /sse`` request head, as uvicorn would put it in the scope."""

    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    """Names lower-cased, values as sent (uvicorn's ``scope["headers"]``)."""

    @classmethod
    def parse(cls, data: bytes) -> StreamHead | None:
        """The head if ``data`` is exactly one plain, complete ``GET /sse`` head; else None."""
        if not data.endswith(_END) or data.find(_END) != len(data) - 4:
            return None
        line = _REQUEST_LINE.match(data)
        if line is None:
            return None
        headers: list[tuple[bytes, bytes]] = []
        position, end = line.end(), len(data) - 2
        match = _HEADER_LINE.match
        while position < end:
            header = match(data, position)
            if header is None:
                return None
            name = header[1].lower()
            if _refused(name, header[2]):
                return None
            headers.append((name, header[2]))
            position = header.end()
        if position != end:
            return None
        return cls(line[1] or b"", headers)


def head_ended(data: bytes) -> bool:
    """Whether ``data`` holds an empty line, in any form a parser may take for the end of
    a head (then it is parsed or handed on, never waited on)."""
    return b"\n\r\n" in data or b"\n\n" in data


def may_be_stream_request(data: bytes) -> bool:
    """Whether ``data``, the start of a request whose head has not ended, may still become
    a plain ``GET /sse`` head: every complete line of it is one. Otherwise uvicorn reads
    it now, and answers a bad line at once as it always did."""
    size = min(len(data), len(STREAM_REQUEST_PREFIX))
    if data[:size] != STREAM_REQUEST_PREFIX[:size]:
        return False
    last = data.rfind(b"\r\n")
    end = 0 if last < 0 else last + 2
    if b"\n" in data[end:]:
        return False  # a bare line feed
    if not end:
        return True  # the request line is not complete yet
    line = _REQUEST_LINE.match(data)
    if line is None:
        return False
    position, match = line.end(), _HEADER_LINE.match
    while position < end:
        header = match(data, position)
        if header is None or header.end() > end or _refused(header[1].lower(), header[2]):
            return False
        position = header.end()
    return True


def _refused(name: bytes, value: bytes) -> bool:
    return name in _REFUSED_HEADERS or (name == b"connection" and value.lower() != _KEEP_ALIVE)
