"""The FastAPI application: ``create_app(settings)`` and its lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.admission import StreamAdmission
from gateway.api_docs import install_api_docs
from gateway.auth import TokenVerifier
from gateway.cors import install_cors, with_cors
from gateway.errors import install_error_handlers
from gateway.forwarded import ForwardedHeaders
from gateway.response import SERVER_SEND
from gateway.routes import STREAM_PATH, router
from gateway.runtime import open_runtime
from gateway.settings import GatewaySettings
from gateway.stream_route import StreamRoute


class GatewayApp(FastAPI):
    """FastAPI that hands ``GET /sse`` to ``stream_entry`` before its middleware stack.

    It applies trusted proxies' forwarded headers itself (``python -m gateway`` runs
    uvicorn without its middleware for them, which would stay on every stream's stack)
    and notes the server's own ``send`` in the scope for ``StreamResponse``.
    """

    stream_entry: ASGIApp | None = None
    forwarded: ForwardedHeaders | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.forwarded is not None and scope["type"] != "lifespan":
            self.forwarded.apply(scope)
        scope[SERVER_SEND] = send
        if (
            self.stream_entry is not None
            and scope["type"] == "http"
            and scope["path"] == STREAM_PATH
            and scope["method"] == "GET"
        ):
            scope["app"] = self  # what Starlette sets: the route reads app.state
            await self.stream_entry(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the app; Redis and the hub are opened by the lifespan, not at import."""
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app.state.runtime = runtime
            yield

    app = GatewayApp(
        title="redis-sse-gateway",
        summary="Typed events from Redis as resumable Server-Sent Events.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # install_api_docs serves it without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.forwarded = ForwardedHeaders()
    # Built here, not per request: a bad key fails the start, not the first subscriber.
    app.state.auth = TokenVerifier.from_settings(settings)
    install_error_handlers(app)
    install_cors(app, settings)  # for every other route, and preflights of /sse
    # CORS outermost, so that refusals carry CORS headers too.
    app.stream_entry = with_cors(StreamRoute(StreamAdmission(limit=settings.max_streams)), settings)
    app.include_router(router)
    install_api_docs(app)
    # The demo page's script and style (the page itself is routes.demo_page).
    app.mount("/static", StaticFiles(packages=[("gateway", "http/static")]), name="static")
    return app
