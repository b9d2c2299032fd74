"""The gateway's logging: uvicorn's loggers and ours, one line per record (``contract.logs``).

``python -m gateway`` hands ``uvicorn_log_config`` to uvicorn, which applies it in
the server process and in every worker. The access log (``--access-log``) goes to
stdout as uvicorn's does, everything else to stderr, all in ``SSE_LOG_FORMAT``.

A stream the gateway cuts (``StreamCut``: its client stopped reading, or it outlived
the shutdown's grace period) is raised to uvicorn so that uvicorn closes the
connection; the cut is already one WARNING line, so ``QuietStreamCuts`` drops
uvicorn's "Exception in ASGI application" and its traceback for it. Before, each
such cut took about a dozen lines. ``RedactTokens`` keeps subscriber tokens given in
the query (``?token=``, for EventSource) out of access lines.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from contract.logs import LogFormat, logging_config
from gateway.sse import StreamCut


class QuietStreamCuts(logging.Filter):
    """Drops the server's error record for a ``StreamCut`` (logged already, as one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, StreamCut)


_QUERY_TOKEN = re.compile(r"([?&]token=)[^&]*")


class RedactTokens(logging.Filter):
    """Replaces the value of a ``token`` query parameter in uvicorn's access lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access line: (client, method, path with query, http version, status).
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path = args[2]
            if "token=" in path:
                record.args = (*args[:2], _QUERY_TOKEN.sub(r"\1***", path), *args[3:])
        return True


def uvicorn_log_config(format: LogFormat, level: str) -> dict[str, Any]:
    """uvicorn's ``log_config``: every logger in ``format``, access lines on stdout."""
    config = logging_config(format, level)
    config["filters"] = {
        "stream_cuts": {"()": "gateway.logs.QuietStreamCuts"},
        "tokens": {"()": "gateway.logs.RedactTokens"},
    }
    config["handlers"]["stdout"] = {**config["handlers"]["stderr"], "stream": "ext://sys.stdout"}
    config["loggers"] = {
        "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        "uvicorn.error": {"filters": ["stream_cuts"]},
        "uvicorn.access": {"handlers": ["stdout"], "filters": ["tokens"], "propagate": False},
    }
    return config
