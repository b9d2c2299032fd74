"""HTTP routes: the SSE stream, health, readiness, stats and event schemas."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse

from contract.channels import InvalidChannelName, validate_channel
from contract.events import BaseEvent, event_schemas
from gateway.cursor import CursorError, parse_cursor, printable_prefix
from gateway.errors import InvalidChannel, NoChannels, TooManyChannels, TooManyStreams
from gateway.frames import cursor_invalid_notice
from gateway.runtime import Runtime
from gateway.subscription import subscription_frames

router = APIRouter()


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def validate_channels(raw: list[str], max_channels: int) -> list[str]:
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
    return channels


@router.get(
    "/sse",
    summary="Open an SSE stream over one or more channels",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def sse(
    request: Request,
    channel: Annotated[
        list[str], Query(description="A channel to subscribe to; repeat for several.")
    ] = [],  # noqa: B006 - FastAPI copies query defaults
    last_event_id: Annotated[
        str | None,
        Query(
            description="Resume position for a first connection: a cursor, "
            "`earliest` or `live` (default). The Last-Event-ID header wins over it."
        ),
    ] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    runtime = _runtime(request)
    settings = runtime.settings
    channels = validate_channels(channel, settings.max_channels)
    if runtime.streams.open >= settings.max_streams:
        raise TooManyStreams(
            f"this gateway holds its maximum of {settings.max_streams} streams",
            "retry later or on another replica",
            headers={"Retry-After": "1"},
        )
    raw_cursor = last_event_id_header if last_event_id_header is not None else last_event_id
    notices: list[BaseEvent[Any]] = []
    try:
        cursor = parse_cursor(raw_cursor, max_length=settings.max_cursor_length)
    except CursorError as exc:
        # A 4xx would make EventSource give up for good: open live and say why instead.
        cursor = parse_cursor(None, max_length=settings.max_cursor_length)
        notices.append(cursor_invalid_notice(exc.reason, printable_prefix(raw_cursor or "")))
    frames = subscription_frames(
        channels,
        cursor,
        notices=notices,
        hub=runtime.hub,
        history=runtime.history,
        options=runtime.stream_options,
        counter=runtime.streams,
    )
    return EventSourceResponse(
        frames,
        ping=settings.ping_interval,
        send_timeout=settings.send_timeout,
        shutdown_grace_period=settings.shutdown_grace_period,
        headers={"Access-Control-Expose-Headers": "Content-Type"},
    )


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
            "reconnects": hub.reconnects,
            "messages": hub.messages,
            "channel_names": runtime.hub.channel_names()[:100],
        },
        "history": {"redis_reads": runtime.history.redis_reads},
        "tasks": len(asyncio.all_tasks()),
    }


@router.get("/events/schema", summary="JSON Schema of every event type's data")
async def schemas() -> dict[str, Any]:
    return event_schemas()
