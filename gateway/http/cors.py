"""CORS for browser clients on another origin (``SSE_CORS_ORIGINS``; empty: off)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from gateway.http.error_responses import error_body
from gateway.settings import GatewaySettings

# What EventSource and fetch-based SSE clients send beyond the CORS-safelisted headers.
ALLOWED_HEADERS = ("Last-Event-ID", "Authorization", "Cache-Control")
# What a publishing page sends beyond those (HTTP publish).
PUBLISH_HEADERS = ("Content-Type", "Idempotency-Key")
# What a cross-origin script may read on errors: when to retry, why auth failed.
EXPOSED_HEADERS = ("Retry-After", "WWW-Authenticate")


class GatewayCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with refused preflights answered in the gateway's JSON error form."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {
            name: value
            for name, value in response.headers.items()
            if name not in ("content-length", "content-type")
        }
        return JSONResponse(
            error_body(
                "cors_rejected",
                f"cross-origin request refused: {refused} not allowed "
                f"(origin {request_headers.get('origin', '')!r})",
                "allowed origins come from SSE_CORS_ORIGINS; methods: GET (and POST with "
                "SSE_HTTP_PUBLISH); "
                f"headers: {', '.join(ALLOWED_HEADERS)} and the CORS-safelisted ones",
            ),
            status_code=400,
            headers=headers,
        )


def cors_options(settings: GatewaySettings) -> dict[str, Any] | None:
    """``GatewayCORSMiddleware``'s arguments, or None when no origins are configured."""
    if not settings.cors_origins:
        return None
    return {
        "allow_origins": settings.cors_origins,
        # POST and its headers only where HTTP publish is on.
        "allow_methods": ["GET", "POST"] if settings.http_publish else ["GET"],
        "allow_headers": list(ALLOWED_HEADERS)
        + (list(PUBLISH_HEADERS) if settings.http_publish else []),
        "allow_credentials": settings.cors_allow_credentials,
        "expose_headers": list(EXPOSED_HEADERS),
    }


def install_cors(app: FastAPI, settings: GatewaySettings) -> None:
    """Add the CORS middleware to the app's stack when origins are configured."""
    if (options := cors_options(settings)) is not None:
        app.add_middleware(GatewayCORSMiddleware, **options)


def with_cors(app: ASGIApp, settings: GatewaySettings) -> ASGIApp:
    """``app`` behind the same CORS middleware, for an app outside the stack."""
    if (options := cors_options(settings)) is None:
        return app
    return GatewayCORSMiddleware(app, **options)
