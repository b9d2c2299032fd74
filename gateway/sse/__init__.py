"""The SSE response on the wire: a task while a stream acts, ordered writes, pings, shutdown."""

from gateway.sse.lifecycle import StreamCut, StreamLifecycle
from gateway.sse.open_streams import OpenStreams
from gateway.sse.output import SharedChunk, StreamOutput
from gateway.sse.response import (
    SERVER_SEND,
    FrameSource,
    Resumer,
    StreamResponse,
    StreamResponses,
)

__all__ = [
    "SERVER_SEND",
    "FrameSource",
    "OpenStreams",
    "Resumer",
    "SharedChunk",
    "StreamCut",
    "StreamLifecycle",
    "StreamOutput",
    "StreamResponse",
    "StreamResponses",
]
