"""``X-Forwarded-For``/``-Proto`` from trusted proxies, applied without a coroutine per request.

uvicorn's ``ProxyHeadersMiddleware`` rewrites the scope's client and scheme, then
awaits the app: its coroutine frame stays on the stack for as long as a stream is
open, about 300 bytes per idle stream. ``ForwardedHeaders`` runs that same
middleware to completion synchronously around an app that returns at once, so
the rewrite is uvicorn's own and nothing of it outlives the call. ``python -m
gateway`` turns uvicorn's copy off and lets ``GatewayApp`` apply this one (the
stock path leaves it on). The trusted proxies come from the settings
(``FORWARDED_ALLOW_IPS``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, cast

from starlette.types import Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

_FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})
"""The headers uvicorn's middleware reads (names lower-cased, as in the scope)."""


class _Done:
    """An awaitable that completes at once."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that stops at once: ``await _Done()`` never suspends


async def _no_receive() -> Message:  # pragma: no cover - the rewrite reads no body
    raise RuntimeError("the forwarded-header rewrite does not receive")


async def _no_send(message: Message) -> None:  # pragma: no cover - nor send
    raise RuntimeError("the forwarded-header rewrite does not send")


class ForwardedHeaders:
    """Applies trusted proxies' forwarded headers to a scope, as uvicorn would."""

    def __init__(self, trusted_hosts: str | list[str]) -> None:
        # Typed loosely: uvicorn's ASGI types and Starlette's describe the same dicts.
        self._middleware: Any = ProxyHeadersMiddleware(cast(Any, self._scope_done), trusted_hosts)

    @staticmethod
    def _scope_done(scope: Scope, receive: Receive, send: Send) -> _Done:
        return _Done()

    def apply(self, scope: Scope) -> None:
        """Rewrite ``scope``'s client and scheme from the headers of a trusted proxy."""
        for name, _ in scope["headers"]:
            if name in _FORWARDED:
                break
        else:
            # Without these headers the middleware changes nothing; asking whether the
            # client is a trusted proxy (an IP address parsed per request) is most of its cost.
            return
        rewrite = self._middleware(scope, _no_receive, _no_send)
        try:
            rewrite.send(None)
        except StopIteration:
            return
        rewrite.close()
        raise RuntimeError("uvicorn's ProxyHeadersMiddleware suspended before the app")
