"""``GET /sse`` served without FastAPI's and Starlette's per-request machinery.

A stream's request handler stays on the stack for as long as the stream is
open, and so does every middleware around it. Through FastAPI that is the
router, the route's parameter solving, its exception wrappers, three
``AsyncExitStack``s and Starlette's middleware stack (error, telemetry and body
limit layers): several KB per idle stream, and most of the CPU it takes to open
one. ``GatewayApp`` hands ``GET /sse`` to ``StreamRoute`` (which admits it, behind
CORS when configured) before any of that; ``StreamRoute`` reads the query and
headers the way FastAPI would for the route's parameters and calls the route's
body (``gateway.http.routes.open_stream``) itself, so validation, auth and cursor
handling are the route's own. The FastAPI route stays registered: it documents
the endpoint in OpenAPI and answers other methods.

An unexpected exception reaches uvicorn, which logs it and answers 500 as
Starlette's error middleware would.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from fastapi import Request
from starlette.types import Receive, Scope, Send

from gateway.errors import GatewayError, error_response
from gateway.http.admission import StreamAdmission
from gateway.http.routes import open_stream


class StreamRoute:
    """The ASGI app of ``GET /sse``: the route's function, called directly.

    ``__call__`` is not a coroutine function: it admits and builds the stream
    synchronously and returns the response's own coroutine, so that no frame of
    this route stays on the stack while the stream is open.
    """

    def __init__(self, admission: StreamAdmission) -> None:
        self.admission = admission

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        try:
            self.admission.admit()
        except GatewayError as exc:
            return error_response(exc)(scope, receive, send)
        try:
            request = Request(scope, receive, send)
            query = request.query_params
            response = open_stream(
                request,
                channel=query.getlist("channel"),
                last_event_id=query.get("last_event_id"),  # the last one, as FastAPI takes
                last_event_id_header=request.headers.get("last-event-id"),
                token=query.get("token"),
            )
        except GatewayError as exc:
            self.admission.release()
            return error_response(exc)(scope, receive, send)
        except BaseException:
            self.admission.release()
            raise
        response.on_end = self.admission.release
        return response(scope, receive, send)
