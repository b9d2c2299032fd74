"""The FastAPI application: ``create_app(settings)`` and its lifespan."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from contract.event_modules import load_event_modules
from gateway._fastpath import FastPath, HeadLimits, http_response, waiting_bound
from gateway.auth import JwksKeys, TokenVerifier, load_rs256_public_key
from gateway.http.admission import StreamAdmission
from gateway.http.api_docs import install_api_docs
from gateway.http.cors import install_cors, with_cors
from gateway.http.error_responses import error_body, install_error_handlers
from gateway.http.history_route import router as history_router
from gateway.http.publish_route import router as publish_router
from gateway.http.routes import router
from gateway.http.stream_route import STREAM_PATH, StreamRoute
from gateway.metrics import Metrics
from gateway.runtime import open_runtime
from gateway.settings import GatewaySettings
from gateway.sse import SERVER_SEND

if TYPE_CHECKING:
    from gateway._fastpath.forwarded import ForwardedHeaders

log = logging.getLogger(__name__)


class GatewayApp(FastAPI):
    """FastAPI that hands ``GET /sse`` to ``stream_entry`` before its middleware stack.

    On the fast path it applies trusted proxies' forwarded headers itself (``python
    -m gateway`` then runs uvicorn without its middleware for them, which would stay
    on every stream's stack). It notes the server's own ``send`` in the scope of a
    stream request for ``StreamResponse``. It answers HEAD wherever GET is answered,
    but on the stream (a HEAD of an endless response would hold a connection for
    nothing).
    """

    stream_entry: ASGIApp | None = None
    forwarded: ForwardedHeaders | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.forwarded is not None and scope["type"] != "lifespan":
            self.forwarded.apply(scope)
        if (
            self.stream_entry is not None
            and scope["type"] == "http"
            and scope["path"] == STREAM_PATH
            and scope["method"] == "GET"
        ):
            scope["app"] = self  # what Starlette sets: the route reads app.state
            scope[SERVER_SEND] = send
            try:
                await self.stream_entry(scope, receive, send)
            finally:
                # The scope would hold the server's send, bound to the request cycle that
                # holds the scope: a reference cycle left for the next collection.
                scope.pop(SERVER_SEND, None)
            return
        if scope["type"] == "http" and scope["method"] == "HEAD" and scope["path"] != STREAM_PATH:
            # HEAD is GET without the body (RFC 9110, 9.3.2), which FastAPI's routes do not
            # answer. The server leaves the body out: its own scope still says HEAD.
            scope = {**scope, "method": "GET"}
        await super().__call__(scope, receive, send)

    def open_stream(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """``GET /sse`` as ``__call__`` serves it, for a server that knows the request is
        one (the fast path's ``OpeningProtocol``): it returns the stream entry's own
        coroutine, so that no frame of the app stays under an open stream. The stream's
        response, or its refusal, takes the server's ``send`` out of the scope again."""
        if self.forwarded is not None:
            self.forwarded.apply(scope)
        if self.stream_entry is None:
            return super().__call__(scope, receive, send)
        scope["app"] = self
        scope[SERVER_SEND] = send
        return self.stream_entry(scope, receive, send)


def token_verifier(settings: GatewaySettings) -> TokenVerifier | None:
    """The verifier the settings configure, or None when auth is off."""
    keys: dict[str, Any] = {}
    if settings.auth_hs256_secret is not None:
        keys["HS256"] = settings.auth_hs256_secret.get_secret_value().encode()
    if settings.auth_rs256_public_key is not None:
        keys["RS256"] = load_rs256_public_key(settings.auth_rs256_public_key)
    jwks = None
    if settings.auth_jwks_url is not None:
        jwks = JwksKeys(settings.auth_jwks_url, cooldown=settings.auth_jwks_cooldown)
    if not keys and jwks is None:
        return None
    return TokenVerifier(
        keys,
        jwks=jwks,
        audience=settings.auth_audience,
        issuer=settings.auth_issuer,
        claim=settings.auth_channels_claim,
        publish_claim=settings.auth_publish_claim,
        cookie=settings.auth_cookie,
    )


def head_limits(settings: GatewaySettings) -> HeadLimits:
    """The fast path's limits on request heads, with their answers in the gateway's JSON."""
    too_large = error_body(
        "request_head_too_large",
        f"the request line and headers are over {settings.max_header_bytes} bytes",
        "send fewer or shorter headers (large cookies?); operators raise SSE_MAX_HEADER_BYTES",
    )
    too_slow = error_body(
        "request_head_timeout",
        f"the request line and headers did not arrive within {settings.header_timeout:g} s",
        "send the whole request head at once; operators raise SSE_HEADER_TIMEOUT",
    )
    return HeadLimits(
        max_bytes=settings.max_header_bytes,
        timeout=settings.header_timeout,
        max_waiting=waiting_bound(settings.max_waiting_connections),
        too_large=http_response(431, "Request Header Fields Too Large", json_bytes(too_large)),
        too_slow=http_response(408, "Request Timeout", json_bytes(too_slow)),
    )


def json_bytes(body: object) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Build the app; Redis and the hub are opened by the lifespan, not at import."""
    settings = settings or GatewaySettings()
    # Every worker process builds its app: each imports the user's event types itself.
    load_event_modules(settings.event_modules)
    fast_path = FastPath(
        settings.fast_path,
        trusted_proxies=settings.forwarded_allow_ips,
        head_limits=head_limits(settings),
    )
    if settings.fast_path and fast_path.reason is not None:
        log.warning("fast path off: %s; streams take the stock path", fast_path.reason)

    # The app's counts, kept for as long as the app: the lifespan's parts and the
    # stream route (which counts refusals before any part is involved) add to them.
    metrics = Metrics(timings=settings.metrics, channel_labels=settings.metrics_channel_labels)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            async with open_runtime(settings, fast_path, metrics) as runtime:
                app.state.runtime = runtime
                yield
        finally:
            auth: TokenVerifier | None = app.state.auth
            if auth is not None and auth.jwks is not None:
                await auth.jwks.aclose()

    app = GatewayApp(
        title="redis-sse-gateway",
        summary="Typed events from Redis as resumable Server-Sent Events.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # install_api_docs serves it without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.fast_path = fast_path
    app.forwarded = fast_path.forwarded
    # Built here, not per request: a bad key fails the start, not the first subscriber.
    app.state.auth = token_verifier(settings)
    if settings.http_publish and app.state.auth is None:
        log.warning(
            "SSE_HTTP_PUBLISH is on without auth: anyone who reaches this gateway can publish"
        )
    install_error_handlers(app)
    install_cors(app, settings)  # for every other route, and preflights of /sse
    # CORS outermost, so that refusals carry CORS headers too.
    admission = StreamAdmission(
        limit=settings.max_streams, per_subject=settings.max_streams_per_subject
    )
    app.stream_entry = with_cors(StreamRoute(admission, metrics), settings)
    app.include_router(router)
    app.include_router(history_router)
    app.include_router(publish_router)
    install_api_docs(app)
    # The demo page's script and style (the page itself is routes.demo_page).
    app.mount("/static", StaticFiles(packages=[("gateway.http", "static")]), name="static")
    return app
