"""A request's JSON body, read within a size limit and parsed strictly.

Refusals say what is wrong before anything happens: a content type other than
``application/json`` (415; it is also what keeps cross-site HTML forms from posting
here), a body over the limit (413, told by ``Content-Length`` or found while
reading, which stops there), a body that trickles in (408), JSON that does not parse
(400, with where). ``NaN`` and ``Infinity`` are not JSON and are refused too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic_core import from_json
from starlette.requests import Request

from gateway.errors import BodyTimeout, BodyTooLarge, InvalidJson, UnsupportedMediaType

JSON_MEDIA_TYPE = "application/json"


def check_json_content_type(request: Request) -> None:
    """Raise 415 unless the request says its body is UTF-8 JSON."""
    media_type, _, parameters = request.headers.get("content-type", "").partition(";")
    charset = ""
    for parameter in parameters.split(";"):
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "charset":
            charset = value.strip().strip('"').lower()
    if media_type.strip().lower() != JSON_MEDIA_TYPE or charset not in ("", "utf-8"):
        sent = request.headers.get("content-type")
        raise UnsupportedMediaType(
            f"the body must be {JSON_MEDIA_TYPE} (UTF-8); the request says "
            + (repr(sent[:100]) if sent is not None else "nothing (no Content-Type)"),
            f"send 'Content-Type: {JSON_MEDIA_TYPE}' with a JSON body",
        )


async def read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The body's bytes; raises 413 as soon as it is known to be over ``limit`` bytes, 408
    if it has not all arrived within ``seconds`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, f"Content-Length says {int(declared)}")
    chunks: list[bytes] = []
    size = 0
    try:
        # uvicorn waits for a body as long as the client sends: a byte a minute would
        # hold the request (and its memory) for ever.
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit, "it is longer")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(
            f"the body did not arrive within {seconds:g} s ({size} bytes came)",
            "send the whole body at once",
        ) from None
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``; raises 400 saying where it stops being JSON."""
    if not body:
        raise InvalidJson(
            "the body is empty", 'send a JSON object, like {"event": ..., "data": ...}'
        )
    try:
        return from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidJson(
            f"the body is not valid JSON: {exc}",
            "send one JSON object, UTF-8 encoded (NaN and Infinity are not JSON)",
        ) from None


async def read_json(request: Request, limit: int, seconds: float) -> Any:
    """Content type checked, body read within ``limit`` bytes and ``seconds`` seconds, JSON
    parsed."""
    check_json_content_type(request)
    return parse_json(await read_body(request, limit, seconds))


def _too_large(limit: int, found: str) -> BodyTooLarge:
    return BodyTooLarge(
        f"the body is over {limit} bytes ({found})",
        "send a smaller event; operators raise SSE_PUBLISH_MAX_BODY_BYTES",
    )
