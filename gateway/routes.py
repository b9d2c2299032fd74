"""HTTP routes: the SSE stream, health, readiness, stats and event schemas."""

from __future__ import annotations

import asyncio
import re
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from redis.exceptions import RedisError

from contract.channels import CHANNEL_NAME_PATTERN, InvalidChannelName, validate_channel
from contract.events import BaseEvent, event_schemas
from gateway.auth import TokenVerifier
from gateway.cursor import CursorError, parse_cursor, printable_prefix
from gateway.errors import (
    ErrorBody,
    InvalidChannel,
    NoChannels,
    RepeatedParameter,
    TooManyChannels,
)
from gateway.frames import cursor_invalid_notice
from gateway.response import StreamResponse
from gateway.runtime import Runtime
from gateway.subscription import Subscription

router = APIRouter()
STREAM_PATH = "/sse"
DEMO_PAGE = resources.files("gateway") / "http" / "static" / "index.html"
# The page renders untrusted payloads: should one ever slip into the DOM, it runs nothing.
DEMO_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def validate_channels(
    raw: list[str], max_channels: int, pattern: re.Pattern[str] | None = None
) -> list[str]:
    """Deduplicated, sorted, validated channel names (sorted keeps cursors canonical)."""
    if not raw:
        raise NoChannels(
            "no channel given",
            "name one or more channels: /sse?channel=echo&channel=reverse_echo",
        )
    channels = sorted(set(raw))
    if len(channels) > max_channels:
        raise TooManyChannels(
            f"{len(channels)} channels requested, at most {max_channels} are allowed per stream",
            "open several streams, or raise SSE_MAX_CHANNELS",
        )
    for name in channels:
        try:
            validate_channel(name)
        except InvalidChannelName as exc:
            raise InvalidChannel(
                str(exc), "channel names are 1-64 of A-Z a-z 0-9 _ - . :"
            ) from None
        if pattern is not None and pattern.fullmatch(name) is None:
            raise InvalidChannel(
                f"channel {name!r} is not served here: names must match {pattern.pattern!r}",
                "subscribe to a channel this gateway serves (SSE_CHANNEL_PATTERN)",
            )
    return channels


def reject_repeats(request: Request, *names: str) -> None:
    """400 for a single-valued query parameter given twice (FastAPI would keep the last)."""
    for name in names:
        count = len(request.query_params.getlist(name))
        if count > 1:
            raise RepeatedParameter(
                f"query parameter {name!r} is given {count} times", f"give {name} once"
            )


# Declared by hand: the route checks the channels itself (for its 400s with hints), so
# FastAPI would document the parameter as optional and unconstrained.
CHANNEL_PARAMETER: dict[str, Any] = {
    "name": "channel",
    "in": "query",
    "required": True,
    "style": "form",
    "explode": True,
    "description": "A channel to subscribe to; repeat for several "
    "(at most SSE_MAX_CHANNELS, default 16; names may be narrowed by SSE_CHANNEL_PATTERN).",
    "schema": {
        "type": "array",
        "minItems": 1,
        "items": {"type": "string", "pattern": CHANNEL_NAME_PATTERN},
    },
}


def _error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorBody} for status in statuses}


@router.get(
    STREAM_PATH,
    summary="Open an SSE stream over one or more channels",
    response_class=StreamResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        **_error_responses(400, 401, 403, 422, 503),
    },
    openapi_extra={"parameters": [CHANNEL_PARAMETER]},
)
async def sse(
    request: Request,
    channel: Annotated[
        list[str], Query(include_in_schema=False)  # documented in CHANNEL_PARAMETER
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    last_event_id: Annotated[
        str | None,
        Query(
            description="Resume position for a first connection: a cursor, "
            "`earliest` or `live` (default). The Last-Event-ID header wins over it."
        ),
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    token: Annotated[
        str | None,
        Query(
            description="Subscriber JWT, for EventSource which cannot send headers "
            "(only read when auth is configured; `Authorization: Bearer` is preferred)."
        ),
    ] = None,
) -> StreamResponse:
    return open_stream(request, channel, last_event_id, last_event_id_header, token)


def open_stream(
    request: Request,
    channel: list[str],
    last_event_id: str | None,
    last_event_id_header: str | None,
    token: str | None,
) -> StreamResponse:
    """The stream for ``GET /sse``'s parameters; raises a ``GatewayError`` for a bad request.

    Synchronous: ``StreamRoute`` calls it without a coroutine of its own.
    """
    runtime = _runtime(request)
    settings = runtime.settings
    reject_repeats(request, "last_event_id", "token")
    channels = validate_channels(channel, settings.max_channels, settings.channel_pattern)
    auth: TokenVerifier | None = request.app.state.auth
    if auth is not None:
        auth.authorize(request, token, channels)
    raw_cursor = last_event_id_header if last_event_id_header is not None else last_event_id
    notices: list[BaseEvent[Any]] = []
    try:
        cursor = parse_cursor(raw_cursor, max_length=settings.max_cursor_length)
    except CursorError as exc:
        # A 4xx would make EventSource give up for good: open live and say why instead.
        cursor = parse_cursor(None, max_length=settings.max_cursor_length)
        notices.append(cursor_invalid_notice(exc.reason, printable_prefix(raw_cursor or "")))
    subscription = Subscription(
        channels,
        cursor,
        notices=notices,
        hub=runtime.hub,
        history=runtime.history,
        options=runtime.stream_options,
    )
    return StreamResponse(
        subscription,
        streams=runtime.streams,
        send_timeout=settings.send_timeout,
        headers={"Access-Control-Expose-Headers": "Content-Type"},
    )


@router.get("/", include_in_schema=False)
async def demo_page() -> HTMLResponse:
    """The demo page: ``/?channel=echo&channel=reverse_echo`` shows those channels live."""
    return HTMLResponse(DEMO_PAGE.read_text(), headers=DEMO_HEADERS)


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: Redis answers and the live flow is connected")
async def readyz(request: Request) -> JSONResponse:
    runtime = _runtime(request)
    problems = []
    if not runtime.hub.connected.is_set():
        problems.append("redis pub/sub connection is down")
    try:
        await asyncio.wait_for(runtime.redis.ping(), timeout=1.0)
    except (RedisError, OSError, TimeoutError) as exc:
        problems.append(f"redis does not answer: {exc or type(exc).__name__}")
    if runtime.draining:
        problems.append("shutting down")
    if problems:
        return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/stats", summary="Counters of this gateway process")
async def stats(request: Request) -> dict[str, Any]:
    runtime = _runtime(request)
    hub = runtime.hub.stats()
    return {
        "streams": {"open": runtime.streams.open, "total": runtime.streams.total},
        "hub": {
            "connected": hub.connected,
            "channels": hub.channels,
            "subscribers": hub.sinks,
            "seated": hub.seated,
            "reconnects": hub.reconnects,
            "messages": hub.messages,
            # With auth on, channel names may be private: /stats then shows only counts.
            "channel_names": (
                runtime.hub.channel_names()[:100] if request.app.state.auth is None else None
            ),
        },
        "history": {"redis_reads": runtime.history.redis_reads},
        "tasks": len(asyncio.all_tasks()),
    }


@router.get("/events/schema", summary="JSON Schema of every event type's data")
async def schemas() -> dict[str, Any]:
    return event_schemas()
