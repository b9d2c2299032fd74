"""``Subscription``: one logical stream over many HTTP connections, resumed exactly.

Each connection is a ``GET /sse`` carrying the last cursor in ``Last-Event-ID``.
The cursor moves with every ``id:`` field, the opening frame's included (it
carries no data, so it yields nothing), and for an event only when the event is
handed to the caller: the cursor a caller stores after handling an event
resumes after that event, never before or past it.

The connections are read by a task of the subscription, one event ahead at
most: a caller whose wait for the next event is cancelled (a timeout around
``anext``) leaves that read running, and the next call gets its event.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self, TypeAlias

import httpx
from httpx_sse import EventSource, ServerSentEvent

from client._errors import ClientError, GatewayUnreachable, NotAnEventStream, SubscriptionRefused
from client._events import Event, decode
from client._retry import ReconnectDelay, parse_retry_after

log = logging.getLogger(__name__)

TokenProvider: TypeAlias = Callable[[], str | Awaitable[str]]
"""Called before every connection: returns a subscriber JWT (or a coroutine that does)."""

STREAM_PATH = "/sse"
DEFAULT_RETRY_MS = 3000
"""What the client waits before the gateway has sent a ``retry:`` (as browsers do)."""
DEFAULT_PING_INTERVAL = 15.0
"""The gateway's default ``SSE_PING_INTERVAL``."""
SILENCE_FACTOR = 2.5
"""An idle stream is pinged only after a whole interval without a write, so up to just
under two intervals can pass between bytes of a healthy stream: 2.5 leaves a margin."""
USER_AGENT = "redis-sse-gateway-client/0.1.0"
_RETRYABLE_STATUS = frozenset({408, 429})


class _Unavailable(Exception):
    """A 5xx (or 408/429) answer: retried, after ``Retry-After`` when given."""

    def __init__(self, status_code: int, retry_after: float | None) -> None:
        super().__init__(f"the gateway answered {status_code}")
        self.retry_after = retry_after


class Subscription:
    """Subscribe to ``channels`` of the gateway at ``base_url``; use with ``async with``.

    Iterating yields each event as its contract class (``Echo``, ``ReverseEcho``, a
    registered ``BaseEvent`` subclass of your own), the gateway's control events
    (``HistoryGap``, ``CursorInvalid``, ``Reconnect``), or a ``RawEvent`` for a name no
    class carries or data its class rejects. ``last_event_id`` is the cursor after the
    last event handed out.

    - ``last_event_id``: where to start: a cursor stored from ``events.last_event_id``,
      ``"earliest"`` (all retained history) or ``None``/``"live"``.
    - ``token``: a subscriber JWT, or a callable (sync or async) returning one, called
      before every connection so that a refreshed token is used after expiry. A sync
      provider runs on the event loop: it must not block.
    - ``ping_interval``: the gateway's ``SSE_PING_INTERVAL``. A connection silent for
      ``silence_timeout`` (default 2.5 pings: the gateway may leave just under two
      intervals between bytes) is dropped and resumed.
    - Reconnects wait the gateway's ``retry:``, doubling per failed attempt up to
      ``max_delay``, with jitter; a 503's ``Retry-After`` is honoured. ``give_up_after``
      seconds of failed attempts raise ``GatewayUnreachable``; None retries forever.
    - 4xx answers raise ``SubscriptionRefused`` (``Unauthorized`` for 401, ``Forbidden``
      for 403) with the gateway's code, message and hint; they are not retried.
    - ``http_client``: an ``httpx.AsyncClient`` of your own (proxies, TLS settings); it
      is left open. Without it the subscription makes and closes its own.

    Bad arguments raise ``TypeError``/``ValueError`` here, before any connection.
    """

    def __init__(
        self,
        base_url: str,
        channels: Sequence[str],
        *,
        last_event_id: str | None = None,
        token: str | TokenProvider | None = None,
        ping_interval: float = DEFAULT_PING_INTERVAL,
        silence_timeout: float | None = None,
        connect_timeout: float = 10.0,
        max_delay: float = 30.0,
        give_up_after: float | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._url = _stream_url(base_url)
        self._params = httpx.QueryParams([("channel", name) for name in _channel_list(channels)])
        self.last_event_id: str | None = _header_value("last_event_id", last_event_id)
        """The cursor after the last event handed out: store it, resume from it."""
        self._position = self.last_event_id
        """The cursor after the last frame read: where a new connection resumes."""
        if isinstance(token, str):
            _header_value("token", token)
        elif token is not None and not callable(token):
            raise TypeError(f"token must be a string or a callable, not {type(token).__name__}")
        self._token = token
        if ping_interval <= 0:
            raise ValueError("ping_interval must be > 0 seconds")
        silence = SILENCE_FACTOR * ping_interval if silence_timeout is None else silence_timeout
        if silence <= 0 or connect_timeout <= 0:
            raise ValueError("silence_timeout and connect_timeout must be > 0 seconds")
        self._timeout = httpx.Timeout(connect_timeout, read=silence)
        self._delay = ReconnectDelay(max_delay)
        if give_up_after is not None and give_up_after < 0:
            raise ValueError("give_up_after must be >= 0 seconds (or None: retry forever)")
        self._give_up_after = give_up_after
        self.retry_ms = DEFAULT_RETRY_MS
        """The reconnect delay the gateway asked for last (its ``retry:`` field)."""
        self.reconnects = 0
        """Streams opened after the first one."""
        self._client = http_client
        self._owns_client = http_client is None
        self._events: AsyncGenerator[tuple[Event, str | None], None] | None = None
        self._next: asyncio.Task[tuple[Event, str | None]] | None = None
        """The read of the next event, when one is under way or done and not yet taken."""
        self._waiting = False
        self._entered = False

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a Subscription can be entered once; call subscribe() again")
        self._entered = True
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=True, headers={"User-Agent": USER_AGENT}
            )
        self._events = self._follow(self._client)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the open connection (and the HTTP client, unless it was passed in)."""
        events, self._events = self._events, None
        pending, self._next = self._next, None
        try:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending  # its outcome (an event, an error) has nobody to go to
            if events is not None:
                await events.aclose()
        finally:
            if self._owns_client and self._client is not None:
                self._owns_client = False
                await self._client.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._events is None:
            raise RuntimeError(
                "iterate a subscription inside its block: "
                "async with subscribe(...) as events: async for event in events: ..."
            )
        if self._waiting:
            raise RuntimeError("a subscription is iterated by one task at a time")
        if self._next is None:
            self._next = asyncio.create_task(_next_of(self._events), name="sse-client-read")
        self._waiting = True
        read = self._next
        try:
            # Shielded: cancelling this wait leaves the read running for the next call.
            event, cursor = await asyncio.shield(read)
        except asyncio.CancelledError:
            if read.cancelled():
                self._next = None  # the read itself was cancelled, not only this wait
            raise
        except BaseException:
            self._next = None  # the read failed: its error is the caller's now
            raise
        finally:
            self._waiting = False
        self._next = None
        if cursor is not None:
            self.last_event_id = cursor
        return event

    async def _follow(
        self, client: httpx.AsyncClient
    ) -> AsyncGenerator[tuple[Event, str | None], None]:
        """Events (with the cursor after each) from one connection after another, each
        resuming at the position read last."""
        failures = 0
        failing_since: float | None = None
        opened_before = False
        while True:
            error: Exception | None = None
            retry_after: float | None = None
            opened = False
            try:
                async with self._connect(client) as source:
                    async for sse in source.aiter_sse():
                        if not opened:
                            opened, failures, failing_since = True, 0, None
                            if opened_before:
                                self.reconnects += 1
                            opened_before = True
                        event = self._receive(sse)
                        if event is not None:
                            yield event, self._position
                log.info("the gateway ended the stream; resuming at %s", self._position)
            except _Unavailable as exc:
                error, retry_after = exc, exc.retry_after
            except httpx.ReadTimeout as exc:
                error = exc
                log.warning("no bytes from the gateway for %.1fs; reconnecting", self._timeout.read)
            except httpx.TransportError as exc:
                error = exc
            except httpx.HTTPError as exc:  # too many redirects, undecodable body
                raise ClientError(f"{type(exc).__name__}: {exc}") from exc
            if not opened:
                failures += 1
                now = time.monotonic()
                failing_since = failing_since or now
                if self._give_up_after is not None and now - failing_since >= self._give_up_after:
                    raise GatewayUnreachable(
                        f"no stream from {self._url} for {now - failing_since:.1f}s "
                        f"({failures} attempts); last error: {_describe(error)}"
                    ) from error
            delay = self._delay.delay(self.retry_ms, failures, retry_after)
            if error is not None:
                log.info("reconnecting in %.2fs: %s", delay, _describe(error))
            await asyncio.sleep(delay)

    @asynccontextmanager
    async def _connect(self, client: httpx.AsyncClient) -> AsyncIterator[EventSource]:
        """One ``GET /sse`` that answered with an event stream; raises for anything else."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self._position is not None:
            headers["Last-Event-ID"] = self._position
        token = await self._current_token()
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with client.stream(
            "GET", self._url, params=self._params, headers=headers, timeout=self._timeout
        ) as response:
            status = response.status_code
            if status >= 500 or status in _RETRYABLE_STATUS:
                raise _Unavailable(status, parse_retry_after(response.headers.get("Retry-After")))
            if status >= 400:
                await response.aread()
                raise SubscriptionRefused.from_response(response)
            content_type = response.headers.get("Content-Type", "")
            if status != 200 or not content_type.startswith("text/event-stream"):
                raise NotAnEventStream(
                    f"{response.url} answered {status} with {content_type or 'no content type'}"
                    ", not an event stream: is it a gateway's address?"
                )
            yield EventSource(response)

    async def _current_token(self) -> str | None:
        if self._token is None or isinstance(self._token, str):
            return self._token
        token = self._token()
        if inspect.isawaitable(token):
            token = await token
        if not isinstance(token, str):
            raise TypeError(f"the token provider returned {type(token).__name__}, not a string")
        return _header_value("the token provider's token", token)

    def _receive(self, sse: ServerSentEvent) -> Event | None:
        """Note the frame's retry and id; the event it dispatches, if any."""
        if sse.retry is not None and sse.retry >= 0:
            self.retry_ms = sse.retry
        if sse.id:
            self._position = sse.id
        if not sse.data:
            # An id-only or retry-only frame: EventSource dispatches nothing either. Every
            # event read before it has been handed out, so the caller's cursor moves too.
            self.last_event_id = self._position
            return None
        return decode(sse.event, sse.data, sse.id or None)


async def _next_of(
    events: AsyncGenerator[tuple[Event, str | None], None],
) -> tuple[Event, str | None]:
    return await anext(events)


def _stream_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, not {type(base_url).__name__}")
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"base_url {base_url!r} is not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(
            f"base_url {base_url!r} must be an http:// or https:// URL with a host, "
            "like http://127.0.0.1:8000"
        )
    if url.query or url.fragment:
        raise ValueError(f"base_url {base_url!r} must have no query or fragment")
    return str(url.copy_with(path=url.path.rstrip("/") + STREAM_PATH))


def _channel_list(channels: Sequence[str]) -> list[str]:
    # A lone string is a sequence of letters: "echo" would subscribe to e, c, h and o.
    if isinstance(channels, str) or not all(isinstance(name, str) for name in channels):
        raise TypeError('channels must be a list of channel names, like ["echo"]')
    if not channels:
        raise ValueError('name at least one channel, like ["echo", "reverse_echo"]')
    return list(channels)


def _header_value(what: str, value: str | None) -> str | None:
    """``value`` if it can travel in an HTTP header, else a ValueError naming ``what``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    if not value or not value.isascii() or not value.isprintable():
        raise ValueError(f"{what} must be non-empty printable ASCII (an HTTP header value)")
    return value


def _describe(error: Exception | None) -> str:
    if error is None:
        return "the stream ended"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
