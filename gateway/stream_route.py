"""``GET /sse`` served without FastAPI's per-request machinery.

A stream's request handler stays on the stack for as long as the stream is
open. Through FastAPI that is the router, the route's parameter solving, its
exception wrappers and three ``AsyncExitStack``s: about 8 KB per idle stream,
and most of the CPU it takes to open one (FastAPI inspects each parameter's
annotation on every request). ``StreamRoute`` sits just inside the admission
middleware, reads the query and headers the way FastAPI would for the route's
parameters, and calls the route's function (``gateway.routes.sse``) itself, so
validation, auth and cursor handling are the route's own. The FastAPI route
stays registered: it documents the endpoint in OpenAPI and answers other methods.
"""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import GatewayError, error_response
from gateway.routes import sse


class StreamRoute:
    """Answers ``GET <path>`` with the stream route's function; everything else passes on."""

    def __init__(self, app: ASGIApp, *, path: str) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        query = request.query_params  # parsed once: the route reads it again
        try:
            response = await sse(
                request,
                channel=query.getlist("channel"),
                last_event_id=query.get("last_event_id"),  # the last one, as FastAPI takes
                last_event_id_header=request.headers.get("last-event-id"),
                token=query.get("token"),
            )
        except GatewayError as exc:
            await error_response(exc)(scope, receive, send)
            return
        # This frame lives as long as the stream: keep neither the request (its parsed
        # query and headers) nor the response object alive through it.
        streaming = response(scope, receive, send)
        del request, query, response
        await streaming
