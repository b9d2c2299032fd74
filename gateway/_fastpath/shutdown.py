"""Whether uvicorn has been told to exit, from inside the app.

sse-starlette's ``AppStatus`` flag is set by its patch of uvicorn's
``Server.handle_exit``, which only takes hold when sse-starlette is imported
before uvicorn installs its signal handlers. A ``--workers`` child imports the
app afterwards, so the flag stays unset there; the server behind the installed
SIGTERM handler is asked too (sse-starlette's own shutdown watcher does the
same, sysid/sse-starlette#132). Both paths, fast and stock, use this: nothing
else tells an app that uvicorn stopped accepting before its lifespan ends.
"""

from __future__ import annotations

import signal

from sse_starlette.sse import AppStatus


def server_exiting() -> bool:
    """Whether uvicorn has been told to exit (SIGTERM or SIGINT)."""
    if AppStatus.should_exit:
        return True
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))
