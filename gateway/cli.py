"""``python -m gateway``: run the gateway under uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

import sse_starlette  # noqa: F401 - installs its SIGTERM hook before uvicorn captures signals
import uvicorn
from pydantic import ValidationError

from contract.event_modules import EventModuleError, load_event_modules
from contract.redis_target import UNREACHABLE, RedisConfigError, RedisTarget
from contract.wire import InvalidPrefix, Keyspace
from gateway._fastpath import FastPath
from gateway.logs import uvicorn_log_config
from gateway.metrics.multiprocess import ENV as METRICS_DIR_ENV
from gateway.metrics.multiprocess import metrics_dir
from gateway.settings import GatewaySettings


class UsageError(Exception):
    """A bad argument or setting, reported as one line."""


WORKER_HEALTHCHECK_SECONDS = 60
"""uvicorn's own default is 5 s, and a worker answers only once it has imported the
gateway: on a busy machine that took 22 s, so every worker was killed before it started,
again and again."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return port


def _at_least_one(text: str) -> int:
    """A whole-number option that must be at least 1 (workers, seconds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway",
        description="Serve Redis channels as resumable Server-Sent Events. "
        "Redis comes from REDIS_URL; every other setting from SSE_* variables (see README).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--workers",
        type=_at_least_one,
        default=1,
        help="worker processes (default: 1)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="log level (default: info)",
    )
    parser.add_argument(
        "--access-log", action="store_true", help="log every request (default: off)"
    )
    parser.add_argument(
        "--http",
        default="auto",
        choices=["auto", "httptools", "h11"],
        help="uvicorn's HTTP protocol (default: auto, the fast path's lighter httptools "
        "protocol when it is on); h11 implies the stock path (SSE_FAST_PATH=false)",
    )
    parser.add_argument(
        "--worker-healthcheck-timeout",
        type=_at_least_one,
        default=WORKER_HEALTHCHECK_SECONDS,
        metavar="SECONDS",
        help="with --workers: how long a worker may take to answer the supervisor's "
        f"health check, starting included, before it is replaced "
        f"(default: {WORKER_HEALTHCHECK_SECONDS})",
    )
    return parser


def load_settings() -> GatewaySettings:
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "SSE_" + ".".join(str(part) for part in first["loc"]).upper()
        raise UsageError(f"invalid setting {name}: {first['msg']}") from None
    try:
        RedisTarget.parse(settings.redis_url, settings.redis_mode)
    except RedisConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        Keyspace(settings.key_prefix)
    except InvalidPrefix as exc:
        raise UsageError(str(exc)) from None
    try:
        # Here, before uvicorn starts, so that a bad module is one line and exit 2.
        load_event_modules(settings.event_modules)
    except EventModuleError as exc:
        raise UsageError(str(exc)) from None
    return settings


@contextlib.contextmanager
def worker_metrics(settings: GatewaySettings, workers: int) -> Iterator[Path | None]:
    """The workers' shared metrics directory for this run (``gateway.metrics.multiprocess``)."""
    if not settings.metrics:
        yield None
        return
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(metrics_dir(workers))
        except OSError as exc:
            raise UsageError(
                f"cannot use {os.environ.get(METRICS_DIR_ENV)!r} as {METRICS_DIR_ENV}: "
                f"{exc.strerror or exc}"
            ) from None
        yield path


def check_redis(settings: GatewaySettings) -> None:
    """Stop here (one line) if Redis contradicts the settings: a cluster URL given to a
    standalone server, or the reverse with ``SSE_REDIS_MODE`` forced. A Redis that does
    not answer yet is not an error: the gateway waits for it."""
    target = RedisTarget.parse(settings.redis_url, settings.redis_mode)
    try:
        asyncio.run(target.detect_mode())
    except RedisConfigError as exc:
        raise UsageError(str(exc)) from None
    except UNREACHABLE:
        pass


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except UsageError as exc:
        print(f"python -m gateway: error: {exc}", file=sys.stderr)
        return 2
    # uvicorn (>= 0.29) re-raises the SIGTERM it handled once its graceful shutdown is done,
    # with the handler it found at start: the default one would end a cleanly drained
    # process with status 143. This one makes that exit (and a SIGTERM before uvicorn
    # takes over) status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if args.http == "h11":
        # The app reads its settings again in each worker: tell it from the environment.
        os.environ["SSE_FAST_PATH"] = "false"
        settings = settings.model_copy(update={"fast_path": False})
    fast_path = FastPath(settings.fast_path, trusted_proxies=settings.forwarded_allow_ips)
    try:
        with worker_metrics(settings, args.workers):
            # Last of the checks (the others need no Redis), before uvicorn starts: a
            # contradiction is one line and exit 2, not a traceback in every worker.
            check_redis(settings)
            uvicorn.run(
                "gateway.http.app:create_app",
                factory=True,
                host=args.host,
                port=args.port,
                workers=args.workers,
                timeout_worker_healthcheck=args.worker_healthcheck_timeout,
                log_level=args.log_level,
                log_config=uvicorn_log_config(settings.log_format, args.log_level),
                access_log=args.access_log,
                timeout_graceful_shutdown=int(settings.shutdown_grace_period) + 2,
                # On the fast path GatewayApp applies forwarded headers itself, without a frame.
                proxy_headers=not fast_path.active,
                forwarded_allow_ips=settings.forwarded_allow_ips,
                http=fast_path.http_protocol or args.http,
                # The fast path bounds request heads itself; h11 has this one limit of its own.
                h11_max_incomplete_event_size=settings.max_header_bytes,
            )
    except UsageError as exc:
        print(f"python -m gateway: error: {exc}", file=sys.stderr)
        return 2
    return 0
