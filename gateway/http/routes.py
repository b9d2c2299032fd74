"""HTTP routes: the SSE stream (documented here, served by ``StreamRoute``), health,
readiness, stats, Prometheus metrics and event schemas."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from redis.exceptions import RedisError

from contract.channels import CHANNEL_NAME_PATTERN
from contract.events import event_schemas
from gateway.errors import MetricsOff
from gateway.http.error_responses import ErrorBody
from gateway.http.stream_route import STREAM_PATH, open_stream
from gateway.metrics.prometheus import CONTENT_TYPE
from gateway.runtime import Runtime
from gateway.sse import StreamResponse

router = APIRouter()
DEMO_PAGE = resources.files("gateway.http") / "static" / "index.html"
# The page renders untrusted payloads: should one ever slip into the DOM, it runs nothing.
DEMO_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


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
        **_error_responses(400, 401, 403, 422, 429, 503, 505),
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
    return open_stream(request, channel, last_event_id, last_event_id_header, token).response


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
    if not runtime.broker.connected:
        problems.append("redis pub/sub connection is down")
    try:
        await asyncio.wait_for(runtime.broker.ping(), timeout=1.0)
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
    metrics = runtime.metrics
    fast_path = request.app.state.fast_path
    return {
        "streams": {"open": runtime.streams.open, "total": metrics.streams_opened},
        "stream_ends": {
            "closed": dict(metrics.streams_closed),
            "refused": dict(metrics.streams_refused),
        },
        "resumes": dict(metrics.resumes),
        "deliveries": {"events": metrics.deliveries, "bytes": metrics.bytes_written},
        "hub": {
            "channels": hub.channels,
            "subscribers": hub.streams,
            "grouped": hub.grouped,
            "groups": hub.groups,
            # With auth on, channel names may be private: /stats then shows only counts.
            "channel_names": (
                runtime.hub.channel_names()[:100] if request.app.state.auth is None else None
            ),
        },
        "redis": runtime.broker.stats().as_dict(),
        "history": {
            "redis_reads": metrics.history_pages["redis"],
            "cache_hits": metrics.history_pages["cache"],
            "shared_reads": metrics.history_pages["shared"],
            "gaps": dict(metrics.history_gaps),
        },
        "fast_path": {"active": fast_path.active, "reason": fast_path.reason},
        "tasks": len(asyncio.all_tasks()),
    }


@router.get(
    "/metrics",
    summary="Prometheus metrics of every worker of this gateway",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **_error_responses(404),
    },
)
async def metrics(request: Request) -> Response:
    export = _runtime(request).export
    if export is None:
        raise MetricsOff(
            "metrics are turned off on this gateway", "set SSE_METRICS=true to serve /metrics"
        )
    return Response(await export.scrape(), media_type=CONTENT_TYPE)


@router.get("/events/schema", summary="JSON Schema of every event type's data")
async def schemas() -> dict[str, Any]:
    return event_schemas()
