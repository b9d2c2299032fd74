"""``python -m producers echo|reverse-echo``: publish an event every ``--interval`` seconds."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from contract.channels import InvalidChannelName, validate_channel
from contract.event_modules import EventModuleError, load_event_modules
from contract.events import BaseEvent, Echo, EchoPayload, ReverseEcho
from contract.logs import configure as configure_logging
from contract.redis_target import RedisConfigError, RedisTarget
from contract.wire import InvalidPrefix, Keyspace
from producers.publisher import Publisher
from producers.settings import ProducerSettings

log = logging.getLogger("producers")

EventFactory = Callable[[str], BaseEvent[Any]]
T = TypeVar("T")

PRODUCERS: dict[str, tuple[str, EventFactory]] = {
    "echo": ("echo", lambda message: Echo(data=EchoPayload(message=message))),
    "reverse-echo": (
        "reverse_echo",
        lambda message: ReverseEcho(data=EchoPayload(message=message[::-1])),
    ),
}


class UsageError(Exception):
    """A bad argument or setting; reported as one line, exit status 2."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number >= 0")
    return value


def _interval(text: str) -> float:
    value = _positive_float(text)
    if not value:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number > 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _channel(text: str) -> str:
    try:
        return validate_channel(text)
    except InvalidChannelName as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m producers",
        description="Publish Echo or ReverseEcho events to a Redis channel. "
        "Redis comes from REDIS_URL (default redis://127.0.0.1:6379/0).",
    )
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="{echo,reverse-echo}")
    for kind, (default_channel, _) in PRODUCERS.items():
        sub = kinds.add_parser(kind, help=f"publish {kind} events")
        sub.add_argument("--message", default="hello", help="message text (default: hello)")
        sub.add_argument(
            "--interval",
            type=_positive_float,
            default=1.0,
            help="seconds between events (default: 1; 0 publishes as fast as Redis allows)",
        )
        sub.add_argument(
            "--count",
            type=_positive_int,
            default=None,
            help="stop after N events (default: run until stopped)",
        )
        sub.add_argument(
            "--channel",
            type=_channel,
            default=default_channel,
            help=f"channel (default: {default_channel})",
        )
        sub.add_argument(
            "--log-level",
            default="info",
            choices=["debug", "info", "warning", "error"],
            help="log level (default: info; debug adds a line per event)",
        )
        sub.add_argument(
            "--log-every",
            type=_interval,
            default=10.0,
            metavar="SECONDS",
            help="seconds between summary lines of what was published (default: 10)",
        )
    return parser


async def until_stopped(work: Awaitable[T], stop: asyncio.Event) -> asyncio.Future[T] | None:
    """Run ``work`` until it is done (its future) or ``stop`` is set (None, work cancelled)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped = not task.done()
        task.cancel()
        stopper.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
    return None if stopped else task


class Summary:
    """A line every ``every`` seconds about what was published, instead of one per event."""

    def __init__(self, channel: str, every: float) -> None:
        self.channel = channel
        self.every = every
        self.total = 0
        self._since = 0
        self._began = self._last = time.monotonic()
        self._last_id = ""

    def published(self, event: BaseEvent[Any], entry_id: str) -> None:
        self.total += 1
        self._since += 1
        self._last_id = entry_id
        log.debug(
            "published",
            extra={"channel": self.channel, "event_name": event.event_name, "id": entry_id},
        )
        now = time.monotonic()
        if now - self._last >= self.every:
            self._line(now)

    def _line(self, now: float) -> None:
        log.info(
            "published events",
            extra={
                "channel": self.channel,
                "events": self._since,
                "seconds": round(now - self._last, 1),
                "total": self.total,
                "last_id": self._last_id,
            },
        )
        self._since, self._last = 0, now

    def stopped(self, kind: str) -> None:
        log.info(
            "producer stopped",
            extra={
                "producer": kind,
                "channel": self.channel,
                "total": self.total,
                "seconds": round(time.monotonic() - self._began, 1),
            },
        )


async def run(
    publisher: Publisher,
    *,
    channel: str,
    make_event: EventFactory,
    message: str,
    interval: float,
    count: int | None,
    stop: asyncio.Event,
    summary: Summary | None = None,
) -> int:
    """Publish until ``count`` events are out or ``stop`` is set; return how many were published."""
    summary = summary or Summary(channel, every=10.0)
    published = 0
    while not stop.is_set() and (count is None or published < count):
        event = make_event(message)
        publish = await until_stopped(publisher.publish(channel, event), stop)
        if publish is None:
            # Stopped while Redis was unreachable: say so instead of dropping silently.
            log.warning("stopped before event %d could be published", published + 1)
            break
        entry_id = publish.result()
        published += 1
        summary.published(event, entry_id)
        if interval and (count is None or published < count):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
        elif not interval:
            await asyncio.sleep(0)  # stay responsive to signals at full speed
    return published


async def _main(args: argparse.Namespace, settings: ProducerSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    channel, make_event = PRODUCERS[args.kind][0], PRODUCERS[args.kind][1]
    channel = args.channel or channel
    publisher = settings.publisher(
        settings.redis_url, prefix=settings.key_prefix, mode=settings.redis_mode
    )
    summary = Summary(channel, every=args.log_every)
    async with publisher:
        connected = await until_stopped(publisher.connect(), stop)
        if connected is None:
            log.warning("stopped before Redis could be reached")
            return 0
        log.info(
            "producer started",
            extra={
                "producer": args.kind,
                "channel": channel,
                "interval_s": args.interval,
                "redis": RedisTarget.parse(settings.redis_url).describe(),
                "mode": connected.result(),
                "replicas": settings.publish_replicas,
            },
        )
        await run(
            publisher,
            channel=channel,
            make_event=make_event,
            message=args.message,
            interval=args.interval,
            count=args.count,
            stop=stop,
            summary=summary,
        )
    summary.stopped(args.kind)
    return 0


def load_settings() -> ProducerSettings:
    try:
        settings = ProducerSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]).upper()
        raise UsageError(f"invalid setting SSE_{where}: {first['msg']}") from None
    try:
        RedisTarget.parse(settings.redis_url, settings.redis_mode)
        Keyspace(settings.key_prefix)
        settings.retention()
    except (InvalidPrefix, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        load_event_modules(settings.event_modules)
    except EventModuleError as exc:
        raise UsageError(str(exc)) from None
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except UsageError as exc:
        print(f"python -m producers: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, args.log_level)
    try:
        return asyncio.run(_main(args, settings))
    except RedisConfigError as exc:  # the server contradicts the settings
        print(f"python -m producers: error: {exc}", file=sys.stderr)
        return 2
