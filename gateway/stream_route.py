"""``GET /sse`` served without FastAPI's and Starlette's per-request machinery.

A stream's request handler stays on the stack for as long as the stream is
open, and so does every middleware around it. Through FastAPI that is the
router, the route's parameter solving, its exception wrappers, three
``AsyncExitStack``s and Starlette's middleware stack (error, telemetry and body
limit layers): several KB per idle stream, and most of the CPU it takes to open
one. ``GatewayApp`` hands ``GET /sse`` to ``StreamRoute`` (behind admission, and
CORS when configured) before any of that; ``StreamRoute`` reads the query and
headers the way FastAPI would for the route's parameters and calls the route's
function (``gateway.routes.sse``) itself, so validation, auth and cursor
handling are the route's own. The FastAPI route stays registered: it documents
the endpoint in OpenAPI and answers other methods.

An unexpected exception reaches uvicorn, which logs it and answers 500 as
Starlette's error middleware would.
"""

from __future__ import annotations

from fastapi import Request
from starlette.types import Receive, Scope, Send

from gateway.errors import GatewayError, error_response
from gateway.routes import sse


class StreamRoute:
    """The ASGI app of ``GET /sse``: the stream route's function, called directly."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
