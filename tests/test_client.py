"""The typed Python client (package ``client``) against real gateway processes.

Numbered events are published on both channels while the gateway under the client
is killed, drained, stopped or restarted; the client must hand out every event once,
in order, typed with the contract's classes, and keep a cursor that resumes exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest

from client import (
    ClientError,
    Event,
    Forbidden,
    GatewayUnreachable,
    NotAnEventStream,
    RawEvent,
    Subscription,
    SubscriptionRefused,
    Unauthorized,
    subscribe,
    subscribe_sync,
)
from client._retry import ReconnectDelay, parse_retry_after
from contract.control import CursorInvalid, HistoryGap, Reconnect
from contract.events import Echo, ReverseEcho
from producers.publisher import Publisher, Retention
from tests.support.assertions import (
    assert_exactly,
    cursor_positions,
    numbered,
    publish_numbered,
    publishing_in_background,
)
from tests.support.ports import free_port
from tests.support.processes import ROOT, GatewayProcess
from tests.support.standalone import standalone_gateway

CHANNELS = ["echo", "reverse_echo"]
EVENTS = 150  # per channel
FAST_RETRY = {"SSE_RETRY_MS": "200"}
SECRET = "client-test-secret-of-at-least-32-bytes"


@dataclass
class Received:
    """What a subscription handed out: each event with the cursor right after it."""

    events: list[Event] = field(default_factory=list)
    cursors: list[str | None] = field(default_factory=list)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def messages(self, kind: type[Echo | ReverseEcho]) -> list[str]:
        return [event.data.message for event in self.of(kind) if type(event) is kind]

    def channel_events(self) -> int:
        return len(self.of(Echo)) + len(self.of(ReverseEcho))


async def follow(events: Subscription, received: Received, count: int) -> None:
    """Iterate until ``count`` channel events have arrived."""
    async for event in events:
        received.events.append(event)
        received.cursors.append(events.last_event_id)
        if received.channel_events() >= count:
            return


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait until it has ended."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def following(
    events: Subscription, count: int, timeout: float = 60
) -> AsyncIterator[tuple[Received, asyncio.Task[None]]]:
    """``follow`` in a task this block owns; the block awaits it or cancels it."""
    received = Received()
    task = asyncio.create_task(asyncio.wait_for(follow(events, received, count), timeout))
    try:
        yield received, task
    finally:
        await stop(task)


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """``until`` for synchronous tests."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.02)


async def publish_echoes(redis_url: str, numbers: range, *, both: bool = False) -> None:
    """msg-<n> on echo (and on reverse_echo when ``both``), for synchronous tests."""
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", numbers)
        if both:
            await publish_numbered(publisher, "reverse_echo", numbers, reverse=True)


def assert_cursors_move_forward(received: Received) -> None:
    seen: dict[str, tuple[int, int]] = {}
    for cursor in received.cursors:
        assert cursor is not None
        for channel, position in cursor_positions(cursor).items():
            assert position >= seen.get(channel, (-1, -1)), f"cursor moved back at {cursor}"
            seen[channel] = position


def assert_every_event_once_in_order(received: Received, count: int = EVENTS) -> None:
    assert_exactly(received.messages(Echo), numbered(count))
    assert_exactly(received.messages(ReverseEcho), numbered(count))
    assert_cursors_move_forward(received)


def token(channels: list[str], lifetime: float = 7200) -> str:
    # Parametrized tokens are made when the tests are collected: they must outlive the suite.
    now = int(time.time())
    body = {"sub": "client-test", "iat": now, "exp": now + lifetime, "channels": channels}
    return jwt.encode(body, SECRET, algorithm="HS256")


# ---- typed events and the cursor


async def test_events_of_both_channels_arrive_as_the_contracts_classes(
    gateway: GatewayProcess, producer_factory: Callable[..., Any], redis_url: str
) -> None:
    async with subscribe(gateway.base_url, CHANNELS, last_event_id="earliest") as events:
        producer_factory("echo", message="hello client", interval=0.05)
        producer_factory("reverse-echo", message="hello client", interval=0.05)
        async with following(events, 1000) as (received, task):
            await until(
                lambda: len(received.of(Echo)) >= 3 and len(received.of(ReverseEcho)) >= 3,
                timeout=20,
                what="3 events of each channel from the producer processes",
            )
            await stop(task)
    assert {event.data.message for event in received.of(Echo)} == {"hello client"}
    assert {event.data.message for event in received.of(ReverseEcho)} == {"tneilc olleh"}
    assert all(type(event) in (Echo, ReverseEcho) for event in received.events)
    assert_cursors_move_forward(received)
    cursor = received.cursors[-1]
    assert cursor is not None
    assert [part.partition("=")[0] for part in cursor.split(",")] == CHANNELS


async def test_the_cursor_names_each_events_entry_and_resumes_after_it(
    gateway: GatewayProcess, redis_url: str
) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        echo_ids = await publish_numbered(publisher, "echo", range(3))
        async with (
            subscribe(gateway.base_url, ["echo"], last_event_id="earliest") as events,
            following(events, 3) as (first, task),
        ):
            await task
        assert first.cursors == [f"echo={entry_id}" for entry_id in echo_ids]

        await publish_numbered(publisher, "echo", range(3, 5))
        async with (
            subscribe(gateway.base_url, ["echo"], last_event_id=first.cursors[-1]) as again,
            following(again, 2) as (rest, task),
        ):
            await task
    assert rest.messages(Echo) == numbered(2, start=3)


async def test_the_opening_frame_sets_the_cursor_before_any_event(
    gateway: GatewayProcess, redis_url: str
) -> None:
    """A subscription that saw no event yet resumes from where its stream opened."""
    async with Publisher.from_url(redis_url) as publisher:
        await publish_numbered(publisher, "echo", range(2))
        async with (
            subscribe(gateway.base_url, ["echo"]) as events,
            following(events, 1) as (received, task),
        ):
            await until(lambda: events.last_event_id is not None, 10, "the opening frame's id")
            opened_at = events.last_event_id
            await publish_numbered(publisher, "echo", [2])
            await task
    assert opened_at is not None
    assert opened_at.startswith("echo=")
    assert opened_at not in ("echo=live", "echo=earliest")
    assert received.messages(Echo) == ["msg-2"], "live start: history before it is skipped"


async def test_unknown_event_names_and_invalid_data_arrive_as_raw_events(
    gateway: GatewayProcess, redis_url: str
) -> None:
    async with Publisher.from_url(redis_url) as publisher:
        await publisher.publish_raw("echo", "price_tick", b'{"symbol":"ACME","price":1.5}')
        await publisher.publish_raw("echo", "echo", b'{"no_message":true}')
        await publish_numbered(publisher, "echo", [0])
    async with (
        subscribe(gateway.base_url, ["echo"], last_event_id="earliest") as events,
        following(events, 1) as (received, task),
    ):
        await task
    unknown, invalid, echo = received.events
    assert isinstance(unknown, RawEvent)
    assert (unknown.name, unknown.data) == ("price_tick", '{"symbol":"ACME","price":1.5}')
    assert unknown.id == received.cursors[0]
    assert unknown.error is not None
    assert "no event type named 'price_tick'" in unknown.error
    assert isinstance(invalid, RawEvent)
    assert invalid.name == "echo"
    assert invalid.error is not None
    assert "message: Field required" in invalid.error
    assert isinstance(echo, Echo)
    assert echo.data.message == "msg-0"


async def test_timeouts_around_anext_lose_no_event_and_keep_the_stream(
    gateway: GatewayProcess, redis_url: str
) -> None:
    """A caller that polls with a timeout cancels many waits mid-read."""
    received: list[str] = []
    cursors: list[str | None] = []
    timeouts = 0
    async with (
        subscribe(gateway.base_url, ["echo"], last_event_id="earliest") as events,
        publishing_in_background(redis_url, ["echo"], count=60, interval=0.005),
    ):
        while len(received) < 60:
            try:
                async with asyncio.timeout(0.001):
                    event = await anext(events)
            except TimeoutError:
                timeouts += 1
                continue
            assert isinstance(event, Echo)
            received.append(event.data.message)
            cursors.append(events.last_event_id)
    assert received == numbered(60)
    assert timeouts > 10
    assert events.reconnects == 0
    assert len(set(cursors)) == 60


# ---- resume across failures


async def test_resume_across_sigkill_and_restart_of_the_gateway_loses_and_repeats_nothing(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    port = free_port()
    first = gateway_factory(port=port, env=FAST_RETRY)
    async with (
        subscribe(first.base_url, CHANNELS, last_event_id="earliest") as events,
        following(events, 2 * EVENTS) as (received, task),
        publishing_in_background(redis_url, CHANNELS, count=EVENTS, interval=0.01) as publisher,
    ):
        await until(lambda: received.channel_events() >= EVENTS // 2, 30, "events before kill")
        first.signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
        await asyncio.to_thread(gateway_factory, port=port, env=FAST_RETRY)
        await task
        await publisher
    assert_every_event_once_in_order(received)
    assert events.reconnects >= 1
    # A crash sends no goodbye, and history covered the gap: no control event at all.
    assert received.of(Reconnect) == received.of(HistoryGap) == []


async def test_resume_across_a_drain_passes_on_the_reconnect_event(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    port = free_port()
    # A base retry of a minute: only the drain's short hint brings the client back in time.
    env = {"SSE_RETRY_MS": "60000", "SSE_SHUTDOWN_RETRY_MS": "150"}
    first = gateway_factory(port=port, env=env)
    async with (
        subscribe(first.base_url, CHANNELS, last_event_id="earliest", max_delay=0.5) as events,
        following(events, 2 * EVENTS) as (received, task),
        publishing_in_background(redis_url, CHANNELS, count=EVENTS, interval=0.01) as publisher,
    ):
        await until(lambda: received.channel_events() >= EVENTS // 2, 30, "events before drain")
        first.signal(signal.SIGTERM)
        await until(lambda: bool(received.of(Reconnect)), 15, "the reconnect event")
        assert await asyncio.to_thread(first.wait, 15) in (0, -signal.SIGTERM)
        await asyncio.to_thread(gateway_factory, port=port, env=env)
        await task
        await publisher
    assert_every_event_once_in_order(received)
    [goodbye] = received.of(Reconnect)
    assert (goodbye.data.reason, goodbye.data.retry_ms) == ("shutdown", 150)
    at = received.events.index(goodbye)
    assert received.cursors[at] == received.cursors[at - 1], "the goodbye keeps the cursor"
    assert events.reconnects >= 1
    assert events.retry_ms == 60000, "the new stream restored the gateway's usual retry"


async def test_a_stream_silent_for_too_long_is_dropped_and_resumed(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGSTOP: the connection stays up but nothing comes, pings included."""
    ping, silence = 0.3, 1.5  # an idle stream gets a byte at least every 2 pings
    gateway = gateway_factory(env={"SSE_PING_INTERVAL": str(ping), **FAST_RETRY})
    caplog.set_level("INFO", logger="client")
    async with (
        Publisher.from_url(redis_url) as publisher,
        subscribe(
            gateway.base_url, ["echo"], last_event_id="earliest", silence_timeout=silence
        ) as events,
        following(events, 9) as (received, task),
    ):
        await publish_numbered(publisher, "echo", range(3))
        await until(lambda: received.channel_events() == 3, 10, "the first events")
        # Idle but pinged: three silence timeouts pass without a reconnect.
        await asyncio.sleep(3 * silence)
        assert events.reconnects == 0, "a pinged stream was taken for a silent one"

        gateway.signal(signal.SIGSTOP)
        try:
            await publish_numbered(publisher, "echo", range(3, 6))
            await until(
                lambda: any("no bytes from the gateway" in r.message for r in caplog.records),
                10,
                "the client to notice the silence",
            )
        finally:
            gateway.signal(signal.SIGCONT)
        await publish_numbered(publisher, "echo", range(6, 9))
        await task
    assert received.messages(Echo) == numbered(9)
    assert events.reconnects >= 1


async def test_a_trimmed_history_arrives_as_a_typed_gap_event_then_what_is_retained(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    port = free_port()
    first = gateway_factory(port=port, env=FAST_RETRY)
    small = Retention(maxlen=5, exact_trim=True)
    async with (
        Publisher.from_url(redis_url, retention=small) as publisher,
        subscribe(first.base_url, ["echo"], last_event_id="earliest") as events,
        following(events, 8) as (received, task),
    ):
        ids = await publish_numbered(publisher, "echo", range(3))
        await until(lambda: received.channel_events() == 3, 10, "the first events")
        first.signal(signal.SIGKILL)
        first.wait(timeout=10)
        await publish_numbered(publisher, "echo", range(3, 15))  # keeps msg-10..msg-14 only
        await asyncio.to_thread(gateway_factory, port=port, env=FAST_RETRY)
        await task
    [gap] = received.of(HistoryGap)
    assert (gap.data.channel, gap.data.reason, gap.data.requested) == ("echo", "trimmed", ids[2])
    assert received.events.index(gap) == 3, "the gap comes before what is retained"
    assert received.messages(Echo) == numbered(3) + numbered(5, start=10)
    assert_cursors_move_forward(received)


async def test_an_unusable_cursor_arrives_as_a_typed_event_and_the_stream_goes_live(
    gateway: GatewayProcess, redis_url: str
) -> None:
    async with (
        subscribe(gateway.base_url, ["echo"], last_event_id="echo=yesterday") as events,
        following(events, 1) as (received, task),
    ):
        await until(lambda: bool(received.events), 10, "the cursor_invalid event")
        async with Publisher.from_url(redis_url) as publisher:
            await publish_numbered(publisher, "echo", [0])
        await task
    invalid, echo = received.events
    assert isinstance(invalid, CursorInvalid)
    assert invalid.data.value == "echo=yesterday"
    assert invalid.data.starting_from == "live"
    assert "is not a stream id" in invalid.data.reason
    assert isinstance(echo, Echo)
    assert received.cursors[-1] is not None
    assert cursor_positions(received.cursors[-1])["echo"] > (0, 0), "a usable cursor again"


# ---- refusals, retries, tokens


@pytest.fixture(scope="module")
def auth_gateway() -> Any:
    with standalone_gateway({"SSE_AUTH_HS256_SECRET": SECRET, **FAST_RETRY}) as (gateway, _):
        yield gateway


def counting_client(attempts: list[httpx.Request]) -> httpx.AsyncClient:
    async def note(request: httpx.Request) -> None:
        attempts.append(request)

    return httpx.AsyncClient(event_hooks={"request": [note]})


@pytest.mark.parametrize(
    ("credential", "error", "code"),
    [
        (None, Unauthorized, "token_missing"),
        ("not-a-jwt", Unauthorized, "token_invalid"),
        (token(["reverse_echo"]), Forbidden, "channel_forbidden"),
    ],
)
async def test_refusals_raise_typed_errors_with_the_gateways_reason_and_are_not_retried(
    auth_gateway: GatewayProcess, credential: str | None, error: type[Exception], code: str
) -> None:
    attempts: list[httpx.Request] = []
    async with counting_client(attempts) as http:
        with pytest.raises(error) as raised:
            async with subscribe(
                auth_gateway.base_url, ["echo"], token=credential, http_client=http
            ) as events:
                await anext(events)
    refusal = raised.value
    assert isinstance(refusal, SubscriptionRefused)
    assert refusal.status_code == (403 if error is Forbidden else 401)
    assert refusal.code == code
    assert refusal.message
    assert refusal.hint
    assert str(refusal) == f"{refusal.status_code} {code}: {refusal.message} (hint: {refusal.hint})"
    assert len(attempts) == 1


async def test_a_bad_channel_name_is_refused_with_the_gateways_hint(
    gateway: GatewayProcess,
) -> None:
    with pytest.raises(SubscriptionRefused) as raised:
        async with subscribe(gateway.base_url, ["no spaces"]) as events:
            await anext(events)
    assert (raised.value.status_code, raised.value.code) == (400, "invalid_channel")
    assert raised.value.hint == "channel names are 1-64 of A-Z a-z 0-9 _ - . :"


@pytest.mark.parametrize("provider_kind", ["sync", "async"])
async def test_a_token_provider_is_asked_on_every_connect_and_its_fresh_token_is_used(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str, provider_kind: str
) -> None:
    # Tokens that expire while the gateway is down: resuming needs the provider's new one.
    lifetime = 2.0
    env = {"SSE_AUTH_HS256_SECRET": SECRET, **FAST_RETRY}
    port = free_port()
    first = gateway_factory(port=port, env=env)
    issued: list[str] = []

    def issue() -> str:
        issued.append(token(["echo"], lifetime=lifetime))
        return issued[-1]

    async def issue_async() -> str:
        return issue()

    provider = issue if provider_kind == "sync" else issue_async
    async with (
        Publisher.from_url(redis_url) as publisher,
        subscribe(first.base_url, ["echo"], last_event_id="earliest", token=provider) as events,
        following(events, 4) as (received, task),
    ):
        await publish_numbered(publisher, "echo", range(2))
        await until(lambda: received.channel_events() == 2, 10, "events on the first token")
        first.signal(signal.SIGKILL)
        first.wait(timeout=10)
        await publish_numbered(publisher, "echo", range(2, 4))
        await asyncio.sleep(lifetime + 1)  # the first token has expired now
        await asyncio.to_thread(gateway_factory, port=port, env=env)
        await task
    assert received.messages(Echo) == numbered(4)
    assert len(issued) >= 2
    assert jwt.decode(issued[-1], SECRET, algorithms=["HS256"])["exp"] > time.time() - 5


async def test_a_full_gateway_is_retried_no_sooner_than_its_retry_after(
    gateway_factory: Callable[..., GatewayProcess], redis_url: str
) -> None:
    gateway = gateway_factory(env={"SSE_MAX_STREAMS": "1", **FAST_RETRY})
    attempts: list[float] = []

    async def note(request: httpx.Request) -> None:
        attempts.append(time.monotonic())

    async with (
        subscribe(gateway.base_url, ["echo"], last_event_id="earliest") as holder,
        following(holder, 1) as (_, holding),
        httpx.AsyncClient(event_hooks={"request": [note]}) as http,
        subscribe(
            gateway.base_url, ["echo"], last_event_id="earliest", http_client=http, max_delay=0.2
        ) as waiter,
        following(waiter, 1) as (received, task),
    ):
        await until(lambda: holder.last_event_id is not None, 10, "the first stream to open")
        await until(lambda: len(attempts) >= 3, 15, "two retries of the refused stream")
        await stop(holding)
        await holder.aclose()  # frees the gateway's only slot
        async with Publisher.from_url(redis_url) as publisher:
            await publish_numbered(publisher, "echo", [0])
        await task
    assert received.messages(Echo) == ["msg-0"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts[:3])]
    # Retry-After: 1 wins over the client's own max_delay of 0.2 s.
    assert all(gap >= 1.0 for gap in gaps), f"Retry-After: 1 not honoured: {gaps}"


async def test_an_unreachable_gateway_raises_after_give_up_after() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(GatewayUnreachable) as raised:
        async with subscribe(url, ["echo"], give_up_after=1.0, max_delay=0.2) as events:
            await anext(events)
    assert time.monotonic() - started >= 1.0
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert "attempts" in str(raised.value)


def test_a_url_that_is_not_a_gateway_raises_instead_of_retrying(tmp_path: Any) -> None:
    (tmp_path / "sse").write_text("not an event stream")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(port), 10, "python -m http.server")
        with (
            pytest.raises(NotAnEventStream, match="not an event stream"),
            subscribe_sync(f"http://127.0.0.1:{port}", ["echo"]) as events,
        ):
            next(events)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.TransportError:
        return False
    return True


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: subscribe("http://h:1", "echo"), TypeError, "list of channel names"),
        (lambda: subscribe("http://h:1", []), ValueError, "at least one channel"),
        (lambda: subscribe("127.0.0.1:8000", ["echo"]), ValueError, "http:// or https://"),
        (lambda: subscribe("ftp://h/", ["echo"]), ValueError, "http:// or https://"),
        (lambda: subscribe("http://h:1?x=1", ["echo"]), ValueError, "no query"),
        (lambda: subscribe("http://h:1", ["e"], last_event_id="a\nb"), ValueError, "printable"),
        (lambda: subscribe("http://h:1", ["e"], token="t\r\nX-Evil: 1"), ValueError, "printable"),
        (lambda: subscribe("http://h:1", ["e"], token=42), TypeError, "a callable"),  # type: ignore[arg-type]
        (lambda: subscribe("http://h:1", ["e"], ping_interval=0), ValueError, "> 0"),
        (lambda: subscribe("http://h:1", ["e"], give_up_after=-1), ValueError, ">= 0"),
    ],
)
def test_bad_arguments_fail_at_once_with_a_clear_message(
    call: Callable[[], Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        call()


async def test_a_token_provider_that_returns_garbage_fails_the_subscription(
    gateway: GatewayProcess,
) -> None:
    with pytest.raises(TypeError, match="returned NoneType"):
        async with subscribe(gateway.base_url, ["echo"], token=lambda: None) as events:  # type: ignore[arg-type, return-value]
            await anext(events)


async def test_iterating_outside_the_block_says_how_to_use_it(gateway: GatewayProcess) -> None:
    events = subscribe(gateway.base_url, ["echo"])
    with pytest.raises(RuntimeError, match="async with subscribe"):
        await anext(events)
    async with events:
        pass
    with pytest.raises(RuntimeError, match="entered once"):
        async with events:
            pass


# ---- the synchronous variant


def test_the_sync_variant_yields_typed_events_and_resumes_from_its_cursor(
    gateway: GatewayProcess, redis_url: str
) -> None:
    asyncio.run(publish_echoes(redis_url, range(3), both=True))
    with subscribe_sync(gateway.base_url, CHANNELS, last_event_id="earliest") as events:
        first = [next(events) for _ in range(6)]
        cursor = events.last_event_id
    assert [type(event) for event in first] == [Echo] * 3 + [ReverseEcho] * 3
    assert [event.data.message for event in first if isinstance(event, Echo)] == numbered(3)

    asyncio.run(publish_echoes(redis_url, range(3, 5), both=True))
    with subscribe_sync(gateway.base_url, CHANNELS, last_event_id=cursor) as events:
        rest = [next(events) for _ in range(4)]
        assert events.reconnects == 0
    with pytest.raises(RuntimeError, match="inside its with block"):
        next(events)
    assert [event.data.message for event in rest if isinstance(event, Echo)] == ["msg-3", "msg-4"]
    assert [e.data.message for e in rest if isinstance(e, ReverseEcho)] == ["msg-3", "msg-4"]
    assert gateway.open_streams() == 0


def test_the_sync_variant_raises_the_same_typed_errors(auth_gateway: GatewayProcess) -> None:
    with (
        pytest.raises(Unauthorized, match="token_missing"),
        subscribe_sync(auth_gateway.base_url, ["echo"]) as events,
    ):
        next(events)


SCRIPT = """
import sys
from client import subscribe_sync
with subscribe_sync(sys.argv[1], ["echo"], last_event_id="earliest") as events:
    for event in events:
        print(event.data.message, flush=True)
"""


def test_ctrl_c_ends_a_sync_script_and_closes_its_stream(
    gateway: GatewayProcess, redis_url: str
) -> None:
    asyncio.run(publish_echoes(redis_url, range(1)))
    script = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, gateway.base_url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert script.stdout is not None
        assert script.stdout.readline() == "msg-0\n"
        assert gateway.open_streams() == 1
        script.send_signal(signal.SIGINT)
        _, stderr = script.communicate(timeout=20)
    finally:
        if script.poll() is None:
            script.kill()
            script.wait(timeout=10)
    assert script.returncode != 0
    assert stderr.strip().splitlines()[-1] == "KeyboardInterrupt"
    wait_until(lambda: gateway.open_streams() == 0, 10, "the gateway to see the stream closed")


# ---- what the package needs


def test_the_client_imports_without_the_gateways_server_dependencies() -> None:
    blocked = ["fastapi", "uvicorn", "redis", "starlette", "sse_starlette", "aiostream", "jwt"]
    program = f"""
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is blocked: the client must not need it")
sys.meta_path.insert(0, Block())
import client
from client import subscribe, subscribe_sync, RawEvent, ClientError
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
assert not loaded, loaded
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_every_error_the_client_raises_is_a_client_error() -> None:
    for error in (SubscriptionRefused, Unauthorized, Forbidden, NotAnEventStream):
        assert issubclass(error, ClientError)
    assert issubclass(GatewayUnreachable, ClientError)


# ---- the reconnect delay


def test_reconnect_delays_honour_retry_back_off_and_stay_jittered() -> None:
    delay = ReconnectDelay(max_delay=2.0)
    for _ in range(200):
        assert 0.25 <= delay.delay(250, failures=0) <= 0.375  # the drain's hint, jittered
        assert 0.25 <= delay.delay(250, failures=1) <= 0.375
        assert 1.0 <= delay.delay(250, failures=3) <= 1.5
        assert 2.0 <= delay.delay(250, failures=40) <= 3.0  # capped by max_delay
        assert 5.0 <= delay.delay(250, failures=40, retry_after=5.0) <= 7.5
        assert 0.1 <= delay.delay(0, failures=1) <= 0.15  # retry: 0 still backs off
        assert delay.delay(0, failures=0) == 0.0
    spread = {round(delay.delay(1000, failures=0), 3) for _ in range(50)}
    assert len(spread) > 10, "clients cut together must not come back together"


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
