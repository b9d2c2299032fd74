"""Resume: cursors, each channel's replay-then-live feed, SSE frames, a client's subscription."""

from gateway.resume.cursor import (
    EARLIEST,
    LIVE,
    Cursor,
    CursorError,
    StreamPositions,
    parse_cursor,
    printable_prefix,
)
from gateway.resume.frames import cursor_invalid_notice
from gateway.resume.subscription import StreamOptions, Subscription

__all__ = [
    "EARLIEST",
    "LIVE",
    "Cursor",
    "CursorError",
    "StreamOptions",
    "StreamPositions",
    "Subscription",
    "cursor_invalid_notice",
    "parse_cursor",
    "printable_prefix",
]
