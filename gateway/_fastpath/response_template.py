"""sse-starlette's response attributes, built once and copied into every stream's response.

``EventSourceResponse.__init__`` builds and checks the same headers and settings
for every response, a large share of the CPU it takes to open a stream. For
responses built with the same arguments its result is the same, so stream
responses copy the attributes of one prototype instead (a ``vars`` copy), each
with its own list of raw headers (middleware may edit them).

sse-starlette's send lock orders its ping task's writes with its body task's.
A stream response runs in one task, so there is nothing to order; one unused
lock serves every response built from the template (an ``anyio.Lock`` is 760
bytes per stream).
"""

from __future__ import annotations

from typing import Any

import anyio
from sse_starlette import EventSourceResponse


class ResponseTemplate:
    """The attributes of a prototype response, to give every response of the same arguments."""

    __slots__ = ("_attributes",)

    def __init__(self, prototype: EventSourceResponse) -> None:
        self._attributes: dict[str, Any] = dict(vars(prototype))
        self._attributes["_send_lock"] = anyio.Lock()

    def fill(self, response: EventSourceResponse) -> None:
        """Give ``response`` the prototype's attributes, with a list of headers of its own."""
        vars(response).update(self._attributes)
        response.raw_headers = list(self._attributes["raw_headers"])
