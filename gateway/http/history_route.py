"""``GET /channels/{channel}/history``: a page of a channel's history as JSON.

``after=<id>`` (or ``earliest``) reads forwards from a position; ``before=<id>`` reads
back from one; both read forwards through the range between; neither gives the newest
entries. Either way the page is in publish order, at most ``limit`` entries (default
100, at most 1000) and about 4 MB of data, and ``has_more`` says whether more lay in
the direction read. Each entry carries its id, its predecessor's id (``prev``: entries
between the two are gone when they differ from the previous entry's id), its event
name and its data as JSON. ``cursor`` resumes an SSE stream of the channel right after
the page's last entry: load the latest page, then subscribe from there, and nothing
falls in between.

Auth is that of subscribing: a token whose channel claim covers the channel. Reads go
through the gateway's shared history reader (``gateway.broker.history``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, JsonValue
from pydantic_core import from_json

from gateway.auth import TokenVerifier
from gateway.broker import Entry, Page, StreamKey, format_stream_id
from gateway.errors import InvalidHistoryQuery
from gateway.http.error_responses import documented_errors
from gateway.http.params import CHANNEL_PATH
from gateway.http.stream_route import reject_repeats, validate_channels
from gateway.resume import EARLIEST
from gateway.resume.cursor import single_channel_cursor
from gateway.runtime import Runtime

HISTORY_PATH = "/channels/{channel}/history"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_PAGE_BYTES = 4 * 1024 * 1024
"""Payload bytes in one page at most: fewer entries than ``limit`` beyond (``has_more``)."""
ID_PATTERN = "[0-9]{1,20}(-[0-9]{1,20})?"
_ID_RE = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")  # ID_PATTERN, with its parts
_MAX_PART = 2**64 - 1
LARGEST_ID: StreamKey = (_MAX_PART, _MAX_PART)
"""Redis's largest stream id: nothing can follow it, and XRANGE refuses to look."""

router = APIRouter()


class HistoryEntry(BaseModel):
    id: str
    prev: str = Field(description="The id of the entry published before this one.")
    event: str
    data: JsonValue = Field(description="The payload, as published.")
    malformed: bool | None = Field(
        default=None, description="True when the stored data is not JSON (then data is text)."
    )


class HistoryPage(BaseModel):
    """A page of history, oldest entry first."""

    channel: str
    entries: list[HistoryEntry]
    has_more: bool = Field(description="More entries lay in the direction read.")
    tip: str = Field(description="The channel's last id ever, when the page was read.")
    cursor: str | None = Field(
        description="The Last-Event-ID that resumes a stream of this channel right after "
        "the page's last entry (null for an empty page)."
    )


@router.get(
    HISTORY_PATH,
    summary="A page of a channel's history, as JSON",
    response_model=HistoryPage,
    responses=documented_errors(400, 401, 403, 422),
)
async def history(
    request: Request,
    channel: Annotated[str, CHANNEL_PATH],
    after: Annotated[
        str | None,
        Query(
            description="Entries after this id (`earliest`: from the oldest retained).",
            json_schema_extra={"pattern": f"^({EARLIEST}|{ID_PATTERN})$"},
        ),
    ] = None,
    before: Annotated[
        str | None,
        Query(
            description="Entries before this id: paging back, or with `after`, the end of a range.",
            json_schema_extra={"pattern": f"^{ID_PATTERN}$"},
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Most entries in the page.")
    ] = DEFAULT_LIMIT,
    token: Annotated[
        str | None,
        Query(description="Subscriber JWT (`Authorization: Bearer` is preferred)."),
    ] = None,
) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    reject_repeats(request, "after", "before", "limit", "token")
    (channel,) = validate_channels([channel], 1, runtime.settings.channel_pattern)
    auth: TokenVerifier | None = request.app.state.auth
    if auth is not None:
        auth.authorize(request, token, [channel])
    end = None if before is None else position(before, "before")
    # One entry more than asked says whether more lie beyond the page.
    if after is None:
        before_id = None if end is None else format_stream_id(end)
        page = await runtime.history.read_before(channel, before_id, limit + 1)
        # Read back, the page keeps the entries nearest to where it was read from.
        entries = within_bytes(page.entries[::-1][:limit], MAX_PAGE_BYTES)[::-1]
    else:
        start = None if after == EARLIEST else position(after, "after")
        after_id = None if start is None else format_stream_id(start)
        count = 0 if start == LARGEST_ID else limit + 1
        page = await runtime.history.read_after(channel, after_id, count)
        if end is not None:
            page = Page(page.tip, tuple(e for e in page.entries if e.key < end))
        entries = within_bytes(page.entries[:limit], MAX_PAGE_BYTES)
    has_more = len(page.entries) > len(entries)
    return JSONResponse(page_body(channel, page.tip, entries, has_more))


def within_bytes(entries: tuple[Entry, ...], budget: int) -> tuple[Entry, ...]:
    """The first entries whose data fits in ``budget`` bytes (the first one always)."""
    total = 0
    for index, entry in enumerate(entries):
        total += len(entry.data)
        if total > budget and index:
            return entries[:index]
    return entries


def position(text: str, name: str) -> StreamKey:
    """An entry id from the query; 400 if it is not one.

    A part beyond Redis's largest (2^64-1) is that largest: no entry can lie past it.
    """
    match = _ID_RE.fullmatch(text)
    if match is None:
        hint = "an entry id like 1732480000123-0" + (", or 'earliest'" if name == "after" else "")
        raise InvalidHistoryQuery(f"'{name}': {text[:40]!r} is not an entry id", f"give {hint}")
    ms, seq = int(match[1]), int(match[2] or 0)
    return LARGEST_ID if ms > _MAX_PART else (ms, min(seq, _MAX_PART))


def page_body(
    channel: str, tip: bytes, entries: tuple[Entry, ...], has_more: bool
) -> dict[str, Any]:
    last = entries[-1].id if entries else None
    return {
        "channel": channel,
        "entries": [entry_json(entry) for entry in entries],
        "has_more": has_more,
        "tip": tip.decode(),
        "cursor": single_channel_cursor(channel, last).decode() if last else None,
    }


def entry_json(entry: Entry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": entry.id.decode(),
        "prev": entry.prev.decode(),
        "event": entry.event.decode(errors="replace"),
    }
    try:
        item["data"] = from_json(entry.data, allow_inf_nan=False)
    except ValueError:
        # Written past the publishers (anyone with Redis access can XADD): shown as text.
        item["data"] = entry.data.decode(errors="replace")
        item["malformed"] = True
    return item
