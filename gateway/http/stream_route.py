"""``GET /sse``: a request's parameters checked and turned into a stream.

``open_stream`` is the route's body: channels, auth and the resume cursor
checked, a ``Subscription`` built and wrapped in its response. It is
synchronous, so that ``StreamRoute`` can call it without a coroutine of its own.

A stream's request handler stays on the stack for as long as the stream is
open, and so does every middleware around it. Through FastAPI that is the
router, the route's parameter solving, its exception wrappers, three
``AsyncExitStack``s and Starlette's middleware stack (error, telemetry and body
limit layers): several KB per idle stream, and most of the CPU it takes to open
one. ``GatewayApp`` hands ``GET /sse`` to ``StreamRoute`` (which admits it,
behind CORS when configured) before any of that; ``StreamRoute`` reads the
query and headers the way FastAPI would for the route's parameters and calls
``open_stream`` itself. The FastAPI route (``gateway.http.routes``) stays
registered: it documents the endpoint in OpenAPI and answers other methods.

An unexpected exception reaches uvicorn, which logs it and answers 500 as
Starlette's error middleware would.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.types import Receive, Scope, Send

from contract.channels import InvalidChannelName, validate_channel
from contract.events import BaseEvent
from gateway.auth import Grant, TokenVerifier
from gateway.errors import (
    ChannelForbidden,
    ExpiredToken,
    GatewayError,
    HttpVersionNotSupported,
    InvalidChannel,
    InvalidToken,
    MissingToken,
    NoChannels,
    RepeatedParameter,
    TooManyChannels,
    TooManyStreams,
    TooManyStreamsForSubject,
)
from gateway.http.admission import StreamAdmission
from gateway.http.error_responses import error_response
from gateway.metrics import Metrics
from gateway.resume import (
    CursorError,
    Subscription,
    cursor_invalid_notice,
    parse_cursor,
    printable_prefix,
)
from gateway.runtime import Runtime
from gateway.sse import SERVER_SEND, StreamResponse

STREAM_PATH = "/sse"

REFUSALS: tuple[type[GatewayError], ...] = (
    TooManyStreams,
    TooManyStreamsForSubject,
    HttpVersionNotSupported,
    MissingToken,
    InvalidToken,
    ExpiredToken,
    ChannelForbidden,
    NoChannels,
    InvalidChannel,
    TooManyChannels,
    RepeatedParameter,
)
"""What ``GET /sse`` may answer instead of a stream: counted by code from 0, so that a
dashboard shows a flat line rather than no data until the first one."""

HTTP_1_0_REFUSED = HttpVersionNotSupported(
    "SSE streams need HTTP/1.1: HTTP/1.0 has no chunked transfer coding",
    "send the request as HTTP/1.1 (curl: drop --http1.0; nginx: proxy_http_version 1.1)",
)


def validate_channels(
    raw: list[str], max_channels: int, pattern: re.Pattern[str] | None = None
) -> list[str]:
    """Deduplicated, sorted, validated channel names (sorted keeps cursors canonical)."""
    if not raw:
        raise NoChannels(
            "no channel given",
            "name one or more channels: /sse?channel=echo&channel=reverse_echo",
        )
    channels = sorted(set(raw))
    if len(channels) > max_channels:
        raise TooManyChannels(
            f"{len(channels)} channels requested, at most {max_channels} are allowed per stream",
            "open several streams, or raise SSE_MAX_CHANNELS",
        )
    for name in channels:
        try:
            validate_channel(name)
        except InvalidChannelName as exc:
            raise InvalidChannel(
                str(exc), "channel names are 1-64 of A-Z a-z 0-9 _ - . :"
            ) from None
        if pattern is not None and pattern.fullmatch(name) is None:
            raise InvalidChannel(
                f"channel {name!r} is not served here: names must match {pattern.pattern!r}",
                "subscribe to a channel this gateway serves (SSE_CHANNEL_PATTERN)",
            )
    return channels


def reject_repeats(request: Request, *names: str) -> None:
    """400 for a single-valued query parameter given twice (FastAPI would keep the last)."""
    for name in names:
        _reject_count(name, len(request.query_params.getlist(name)))


def _reject_count(name: str, count: int) -> None:
    if count > 1:
        raise RepeatedParameter(
            f"query parameter {name!r} is given {count} times", f"give {name} once"
        )


SINGLE_VALUED = ("last_event_id", "token")
"""``GET /sse``'s query parameters that may be given once."""


class StreamQuery(NamedTuple):
    """``GET /sse``'s query, read once from the raw query string as Starlette reads it
    (latin-1, blank values kept); a single-valued parameter takes its last value, as
    FastAPI does."""

    channels: list[str]
    last_event_id: str | None
    token: str | None
    counts: Mapping[str, int]
    """How often each single-valued parameter was given (absent: never)."""

    @classmethod
    def parse(cls, query_string: bytes) -> StreamQuery:
        channels: list[str] = []
        last_event_id = token = None
        counts: dict[str, int] = {}
        if query_string:
            for name, value in query_pairs(query_string.decode("latin-1")):
                if name == "channel":
                    channels.append(value)
                elif name == "last_event_id":
                    last_event_id = value
                    counts[name] = counts.get(name, 0) + 1
                elif name == "token":
                    token = value
                    counts[name] = counts.get(name, 0) + 1
        return cls(channels, last_event_id, token, counts)


def query_pairs(query: str) -> list[tuple[str, str]]:
    """``parse_qsl(query, keep_blank_values=True)``, without its per-pair unquoting calls
    for the common query that has nothing to unquote (no ``%`` and no ``+``)."""
    if "%" in query or "+" in query:
        return parse_qsl(query, keep_blank_values=True)
    pairs = []
    for pair in query.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            pairs.append((name, value))
    return pairs


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` lower case), as Starlette's
    ``Headers.get`` reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class OpenedStream(NamedTuple):
    response: StreamResponse
    subject: str | None
    """The token's subject, for the per-subject limit (None: no auth, or no ``sub``)."""


def stream_lifetime(grant: Grant, cap: float | None) -> float:
    """Seconds the stream of a verified token may stay open: until its ``exp``, or ``cap``."""
    left = max(0.0, grant.seconds_left())
    return left if cap is None else min(left, cap)


def open_stream(
    request: Request,
    channel: list[str],
    last_event_id: str | None,
    last_event_id_header: str | None,
    token: str | None,
    *,
    counts: Mapping[str, int] | None = None,
) -> OpenedStream:
    """The stream for ``GET /sse``'s parameters; raises a ``GatewayError`` for a bad request.

    ``counts``: how often each single-valued parameter was given (None: read them from
    the request)."""
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    if counts is None:
        reject_repeats(request, *SINGLE_VALUED)
    else:
        for name in SINGLE_VALUED:
            _reject_count(name, counts.get(name, 0))
    channels = validate_channels(channel, settings.max_channels, settings.channel_pattern)
    auth: TokenVerifier | None = request.app.state.auth
    lifetime: float | None = None
    subject: str | None = None
    if auth is not None:
        grant = auth.authorize(request, token, channels)
        lifetime = stream_lifetime(grant, settings.auth_max_stream_seconds)
        subject = grant.subject
    raw_cursor = last_event_id_header if last_event_id_header is not None else last_event_id
    notices: list[BaseEvent[Any]] = []
    try:
        cursor = parse_cursor(raw_cursor, max_length=settings.max_cursor_length)
        start = cursor.kind
    except CursorError as exc:
        # A 4xx would make EventSource give up for good: open live and say why instead.
        cursor = parse_cursor(None, max_length=settings.max_cursor_length)
        notices.append(cursor_invalid_notice(exc.reason, printable_prefix(raw_cursor or "")))
        start = "cursor_invalid"
    if start != "live":
        runtime.stream_options.metrics.resumes[start] += 1
    subscription = Subscription(
        channels,
        cursor,
        notices=notices,
        hub=runtime.hub,
        history=runtime.history,
        options=runtime.stream_options,
        lifetime=lifetime,
    )
    return OpenedStream(runtime.responses.open(subscription), subject)


class StreamRoute:
    """The ASGI app of ``GET /sse``: the route's function, called directly.

    ``__call__`` is not a coroutine function: it admits and builds the stream
    synchronously and returns the response's own coroutine, so that no frame of
    this route stays on the stack while the stream is open.
    """

    def __init__(self, admission: StreamAdmission, metrics: Metrics) -> None:
        self.admission = admission
        self.metrics = metrics
        for refusal in REFUSALS:
            metrics.streams_refused.setdefault(refusal.code, 0)

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        requested_at = time.perf_counter()
        if scope.get("http_version") == "1.0":
            # No chunked coding in HTTP/1.0, and uvicorn frames every streamed body so.
            return self._refuse(HTTP_1_0_REFUSED, scope, receive, send)
        try:
            self.admission.admit()
        except GatewayError as exc:
            return self._refuse(exc, scope, receive, send)
        try:
            request = Request(scope, receive, send)
            query = StreamQuery.parse(scope["query_string"])
            auth: TokenVerifier | None = request.app.state.auth
            fetch = None if auth is None else auth.key_fetch(request, query.token)
            if fetch is not None:
                return self._open_once_fetched(fetch, request, query, send, requested_at)
        except BaseException:
            self.admission.release()
            raise
        return self._open(request, query, send, requested_at)

    async def _open_once_fetched(
        self,
        fetch: Awaitable[None],
        request: Request,
        query: StreamQuery,
        send: Send,
        requested_at: float,
    ) -> None:
        """Open the stream once the keys its token needs are fetched (this frame then stays
        on the stack for the stream's lifetime: only the first tokens of a new key)."""
        try:
            await fetch
        except BaseException:
            self.admission.release()
            raise
        await self._open(request, query, send, requested_at)

    def _open(
        self, request: Request, query: StreamQuery, send: Send, requested_at: float
    ) -> Coroutine[Any, Any, None]:
        """The response's coroutine for an admitted request (the slot is the caller's)."""
        scope, receive = request.scope, request.receive
        try:
            response, subject = open_stream(
                request,
                channel=query.channels,
                last_event_id=query.last_event_id,
                last_event_id_header=_header(scope, b"last-event-id"),
                token=query.token,
                counts=query.counts,
            )
            response.on_end = self.admission.admit_subject(subject)
            response.requested_at = requested_at
        except GatewayError as exc:
            self.admission.release()
            return self._refuse(exc, scope, receive, send)
        except BaseException:
            self.admission.release()
            raise
        return response(scope, receive, send)

    def _refuse(
        self, exc: GatewayError, scope: Scope, receive: Receive, send: Send
    ) -> Coroutine[Any, Any, None]:
        self.metrics.streams_refused[exc.code] += 1
        scope.pop(SERVER_SEND, None)  # for StreamResponse alone; kept, a reference cycle
        return error_response(exc)(scope, receive, send)
