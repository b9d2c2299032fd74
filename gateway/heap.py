"""Giving memory back to the system after a burst of streams has gone.

Stalled resumers, large replays and bursts of slow clients leave the C heap with
many free chunks (frames, transport buffers: most are larger than Python's small
object allocator handles). glibc keeps them for reuse, so the process's RSS stays
near its peak long after the streams left. ``malloc_trim`` returns free pages to
the system; it walks the heap, so it runs only after many streams have ended, not
per stream. Without glibc (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

TRIM_AFTER_STREAMS = 64
"""Streams that must have ended since the last trim for the next to be worth its walk."""


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


_TRIM = _malloc_trim()


def trim_after_burst(peak: int, open_streams: int) -> bool:
    """Give free heap back (True) if at least ``TRIM_AFTER_STREAMS`` of the ``peak`` open
    streams have ended since it was reached; the caller then starts a new peak."""
    if _TRIM is None or peak - open_streams < TRIM_AFTER_STREAMS:
        return False
    _TRIM(0)
    return True
