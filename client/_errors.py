"""The client's exceptions: one hierarchy under ``ClientError``.

Only what retrying cannot fix is raised: a refusal (4xx), a URL that does not
lead to an event stream, or a gateway unreachable for longer than the caller
allowed. Network errors and 5xx answers are retried instead.
"""

from __future__ import annotations

import json
from typing import Any

import httpx


class ClientError(Exception):
    """Base of every error the client raises."""


class SubscriptionRefused(ClientError):
    """The gateway refused the subscription with a 4xx answer; retrying would not help.

    ``code``, ``message`` and ``hint`` come from the gateway's JSON error body
    (``{"error": {"code", "message", "hint"}}``); for an answer without one (a
    proxy's HTML page), ``code`` is ``http_<status>`` and ``message`` the start
    of the body.
    """

    def __init__(self, status_code: int, code: str, message: str, hint: str | None = None) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.hint = hint
        text = f"{status_code} {code}: {message}"
        super().__init__(f"{text} (hint: {hint})" if hint else text)

    @classmethod
    def from_response(cls, response: httpx.Response) -> SubscriptionRefused:
        """The exception for a read 4xx response: ``Unauthorized``, ``Forbidden`` or this."""
        code, message, hint = _error_body(response)
        kind = {401: Unauthorized, 403: Forbidden}.get(response.status_code, cls)
        return kind(response.status_code, code, message, hint)


class Unauthorized(SubscriptionRefused):
    """401: the token is missing, malformed, expired or wrongly signed (see ``code``)."""


class Forbidden(SubscriptionRefused):
    """403: the token is valid but does not grant every requested channel."""


class NotAnEventStream(ClientError):
    """The URL answered successfully, but not with an SSE stream: it is not a gateway."""


class GatewayUnreachable(ClientError):
    """No stream could be opened for longer than ``give_up_after``; ``__cause__`` is the
    last failure."""


def _error_body(response: httpx.Response) -> tuple[str, str, str | None]:
    """``(code, message, hint)`` from a gateway's JSON error body, or a fallback."""
    fallback = (f"http_{response.status_code}", _excerpt(response.text) or response.reason_phrase)
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        return (*fallback, None)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return (*fallback, None)
    code, message, hint = error.get("code"), error.get("message"), error.get("hint")
    return (
        code if isinstance(code, str) else fallback[0],
        message if isinstance(message, str) else fallback[1],
        hint if isinstance(hint, str) and hint else None,
    )


def _excerpt(text: str, limit: int = 200) -> str:
    """The start of an untrusted body, on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
