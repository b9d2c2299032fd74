"""The fast path: every use of uvicorn's and sse-starlette's private objects, behind one switch.

Nothing else in the gateway touches a framework's insides. ``FastPath`` says
whether this process may (``compat`` checks the installed versions at import)
and hands out the pieces; with it off, streams take the stock path through ASGI
``send``/``receive`` alone. ``frame_chunk`` is HTTP/1.1 chunked framing, for
bytes that a group writes to many transports directly.
"""

from gateway._fastpath.chunked import frame_chunk
from gateway._fastpath.compat import TESTED_VERSIONS, UNUSABLE_REASON
from gateway._fastpath.heads import HeadLimits, http_response, waiting_bound
from gateway._fastpath.shutdown import server_exiting
from gateway._fastpath.switch import FastPath

__all__ = [
    "TESTED_VERSIONS",
    "UNUSABLE_REASON",
    "FastPath",
    "HeadLimits",
    "frame_chunk",
    "http_response",
    "server_exiting",
    "waiting_bound",
]
