"""``/docs`` with assets the gateway serves itself: no CDN, works offline.

FastAPI's own page loads Swagger UI from a CDN. This one loads it from the
fastapi-offline package (Swagger UI 5, which renders the OpenAPI 3.1 document
FastAPI makes), mounted at ``DOCS_ASSETS``. ReDoc is not served: its bundle
fetches a logo from its vendor's CDN; ``/openapi.json`` feeds any other viewer.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

DOCS_ASSETS = "/docs-assets"


def install_api_docs(app: FastAPI) -> None:
    """Add ``/docs`` to an app built with ``docs_url=None, redoc_url=None``."""
    app.mount(
        DOCS_ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets"
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", ""))
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon.png",
        )
