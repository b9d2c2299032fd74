"""The FastAPI application: ``create_app(settings)`` and its lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from gateway.admission import StreamAdmission
from gateway.auth import TokenVerifier
from gateway.cors import install_cors
from gateway.errors import install_error_handlers
from gateway.response import SERVER_SEND
from gateway.routes import router
from gateway.runtime import open_runtime
from gateway.settings import GatewaySettings
from gateway.stream_route import StreamRoute


class GatewayApp(FastAPI):
    """FastAPI that notes the server's own ``send`` in the scope for ``StreamResponse``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND] = send
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
    )
    app.state.settings = settings
    # Built here, not per request: a bad key fails the start, not the first subscriber.
    app.state.auth = TokenVerifier.from_settings(settings)
    install_error_handlers(app)
    app.add_middleware(StreamRoute, path="/sse")  # innermost: streams skip FastAPI's routing
    app.add_middleware(StreamAdmission, path="/sse", limit=settings.max_streams)
    install_cors(app, settings)  # outermost, so that refusals carry CORS headers too
    app.include_router(router)
    return app
