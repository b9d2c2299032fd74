"""The one mapping of errors to HTTP: a status and a JSON body.

Body: ``{"error": {"code": ..., "message": ..., "hint": ...}}``; the message
says what is wrong, the hint how to fix it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import GatewayError


class ErrorDetail(BaseModel):
    code: str
    message: str
    hint: str | None = None
    errors: list[dict[str, Any]] | None = None
    """Itemised problems, where there are several (pydantic's validation errors)."""


class ErrorBody(BaseModel):
    """The JSON body of every 4xx/5xx answer (documented in the OpenAPI schema)."""

    error: ErrorDetail


def error_body(
    code: str, message: str, hint: str = "", errors: list[dict[str, Any]] | None = None
) -> dict[str, dict[str, Any]]:
    body: dict[str, Any] = {"code": code, "message": message}
    if hint:
        body["hint"] = hint
    if errors is not None:
        body["errors"] = errors
    return {"error": body}


def documented_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses`` for OpenAPI: these statuses answer with an ``ErrorBody``."""
    return {status: {"model": ErrorBody} for status in statuses}


def error_response(exc: GatewayError) -> JSONResponse:
    """The HTTP answer to ``exc``: its status, headers and JSON body."""
    return JSONResponse(
        error_body(exc.code, exc.message, exc.hint, exc.errors),
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _gateway_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(
            str(part) for part in error.get("loc", ()) if part not in ("query", "header")
        )
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return JSONResponse(
        error_body(
            "invalid_parameter",
            "; ".join(problems) or "invalid request",
            "see GET /docs for the parameters each route takes",
        ),
        status_code=422,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    hint = "see GET /docs for the routes" if exc.status_code in (404, 405) else ""
    return JSONResponse(
        error_body(code, str(exc.detail), hint),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
