"""The log lines every process of the project writes: text for people, JSON for collectors.

Gateways and producers share them (``SSE_LOG_FORMAT=text|json``), so one log
pipeline reads both. Everything logs through the standard library (uvicorn's
loggers included); structlog's ``ProcessorFormatter`` renders each record as one
line: time, level, logger, process id, the message, and the fields given with
``extra={...}``. In JSON a traceback is one more field, so even an error is one
line. uvicorn's access lines also get their parts as fields (client, method,
path, status).
"""

from __future__ import annotations

import logging
import logging.config
import os
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")
"""The arguments of uvicorn's access line: ``'%s - "%s %s HTTP/%s" %d'``."""


def _process(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    record: logging.LogRecord | None = event.get("_record")
    event["pid"] = record.process if record is not None else os.getpid()
    return event


def _access_fields(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    args = event.pop("positional_args", None)  # every record's; only the access line's are kept
    record: logging.LogRecord | None = event.get("_record")
    access = record is not None and record.name == "uvicorn.access"
    if access and isinstance(args, tuple) and len(args) == len(_ACCESS_FIELDS):
        event.update(zip(_ACCESS_FIELDS, args, strict=True))
    return event


def _drop_color_message(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's coloured copy of the message
    return event


def formatter(format: LogFormat = "text") -> logging.Formatter:
    """The formatter for ``format``; ``logging.config`` names it ``contract.logs.formatter``."""
    if format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {format!r}")
    # Python's warnings would otherwise go to stderr as they are, breaking one-record lines.
    # logging.config builds this formatter in every process (uvicorn's workers included).
    logging.captureWarnings(True)
    pre_chain: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        _process,
        structlog.stdlib.ExtraAdder(),
        _access_fields,
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Processor]
    if format == "json":
        renderer = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        renderer = [
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        pass_foreign_args=True,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )


def logging_config(format: LogFormat, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` that sends every logger to stderr in ``format``."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": {"()": "contract.logs.formatter", "format": format}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }


def configure(format: LogFormat, level: str) -> None:
    """Log every record of this process as one line of ``format`` on stderr."""
    logging.config.dictConfig(logging_config(format, level))
