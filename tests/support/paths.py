"""The two ways a stream's bytes can take through uvicorn: the fast path and the stock path.

Core end-to-end tests run on each (``stream_path`` fixture): the fast path (the
default, uvicorn's insides used directly), the stock path with ``SSE_FAST_PATH=false``
(ASGI send/receive only, uvicorn's own httptools protocol) and the stock path under
uvicorn's h11 protocol (``--http h11``). Each gateway started for a stock path
proves from ``/stats`` that the fast path really is off.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class StreamPath:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    @property
    def fast(self) -> bool:
        return not self.env and not self.args


FAST = StreamPath("fast")
STOCK = StreamPath("stock", env={"SSE_FAST_PATH": "false"})
H11 = StreamPath("h11", args=["--http", "h11"])
ALL_PATHS = [FAST, STOCK, H11]
