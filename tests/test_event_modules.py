"""User event types (``SSE_EVENT_MODULES``): a module of the user's, imported at start.

The modules are real files the tests write into a temporary directory on PYTHONPATH.
Their event classes show in ``/events/schema`` (in every worker), can be published over
HTTP and come out of the Python client as themselves; a module that clashes or cannot be
imported stops the gateway and the producers with one line naming it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.http_publish import PUBLISH_ON, post_event, published_id
from tests.support.processes import ROOT, GatewayProcess, ProducerProcess, run_cli
from tests.support.sse import sse_connect

MODULES = {
    "events.py": """
        from pydantic import BaseModel

        from contract.events import BaseEvent


        class PricePayload(BaseModel):
            symbol: str
            price: float


        class PriceTick(BaseEvent[PricePayload]):
            '''A trade's price.'''
    """,
    "other.py": """
        from contract.events import BaseEvent


        class PriceTick(BaseEvent[int]):
            '''Another class whose SSE name is price_tick.'''
    """,
    "clash.py": """
        from contract.events import BaseEvent, EchoPayload


        class Echo(BaseEvent[EchoPayload]):
            '''Named like the built-in Echo.'''
    """,
    "broken.py": """
        raise RuntimeError("no database configured")
    """,
}


@pytest.fixture
def shop(tmp_path: Path) -> dict[str, str]:
    """A package ``shop`` with the modules above; the environment that finds it."""
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in MODULES.items():
        (package / name).write_text(textwrap.dedent(source))
    return {"PYTHONPATH": str(tmp_path)}


async def test_a_user_event_type_is_in_the_schema_and_published_over_http(
    shop: dict[str, str], gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(env={**shop, **PUBLISH_ON, "SSE_EVENT_MODULES": "shop.events"})
    schemas = httpx.get(f"{gateway.base_url}/events/schema", timeout=10).json()
    assert set(schemas["price_tick"]["properties"]) == {"symbol", "price"}
    assert {"echo", "reverse_echo", "history_gap"} <= set(schemas)

    async with sse_connect(gateway.base_url, ["prices"]) as stream:
        tick = {"symbol": "ACME", "price": 12.5}
        published_id(
            await asyncio.to_thread(post_event, gateway.base_url, "prices", "price_tick", tick)
        )
        (frame,) = await stream.take(1, timeout=10)
    assert (frame.event, json.loads(frame.data)) == ("price_tick", tick)

    refused = post_event(
        gateway.base_url, "prices", "price_tick", {"symbol": "ACME", "price": "high"}
    )
    assert refused.status_code == 422
    assert [e["loc"] for e in refused.json()["error"]["errors"]] == [["data", "price"]]


def test_every_worker_imports_the_user_modules(
    shop: dict[str, str], gateway_factory: Callable[..., GatewayProcess]
) -> None:
    gateway = gateway_factory(env={**shop, "SSE_EVENT_MODULES": "shop.events"}, workers=2)
    for _ in range(20):  # a new connection each: both workers answer some
        schemas = httpx.get(f"{gateway.base_url}/events/schema", timeout=10).json()
        assert "price_tick" in schemas


CLIENT_SCRIPT = """
import sys
from contract.event_modules import load_from_environment
from client import subscribe_sync

load_from_environment()
with subscribe_sync(sys.argv[1], ["prices"], last_event_id="earliest") as events:
    event = next(iter(events))
    print(type(event).__module__, type(event).__name__, getattr(event, "data", None))
"""


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        pytest.param("shop.events", "shop.events PriceTick symbol='ACME' price=1.5", id="loaded"),
        pytest.param("", 'client._events RawEvent {"symbol":"ACME","price":1.5}', id="raw if not"),
    ],
)
def test_the_client_returns_a_user_event_as_its_class_once_the_modules_are_loaded(
    shop: dict[str, str],
    gateway_factory: Callable[..., GatewayProcess],
    modules: str,
    expected: str,
) -> None:
    gateway = gateway_factory(env={**shop, **PUBLISH_ON, "SSE_EVENT_MODULES": "shop.events"})
    published_id(
        post_event(gateway.base_url, "prices", "price_tick", {"symbol": "ACME", "price": 1.5})
    )
    done = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, gateway.base_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{shop['PYTHONPATH']}:{ROOT}",
            "SSE_EVENT_MODULES": modules,
        },
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_a_producer_starts_with_the_user_modules(shop: dict[str, str], redis_url: str) -> None:
    producer = ProducerProcess(
        redis_url, "echo", count=1, interval=0, env={**shop, "SSE_EVENT_MODULES": "shop.events"}
    )
    try:
        assert producer.wait(timeout=30) == 0, producer.log()
    finally:
        producer.close()


@pytest.mark.parametrize(
    ("modules", "says"),
    [
        pytest.param(
            "shop.clash",
            "SSE_EVENT_MODULES: module 'shop.clash': two event classes are named 'echo' on the"
            " wire: contract.events.Echo and shop.clash.Echo; rename one",
            id="a user class named like a built-in one",
        ),
        pytest.param(
            "shop.events,shop.other",
            "module 'shop.other': two event classes are named 'price_tick' on the wire:"
            " shop.events.PriceTick and shop.other.PriceTick",
            id="two user classes with one name",
        ),
        pytest.param(
            "shop.broken",
            "SSE_EVENT_MODULES: cannot import 'shop.broken': RuntimeError: no database configured",
            id="a module that raises",
        ),
        pytest.param(
            "shop.events,shop.missing",
            "cannot import 'shop.missing': No module named 'shop.missing' (is the directory"
            " that holds it on PYTHONPATH?)",
            id="a module that is not there",
        ),
        pytest.param(
            "shop events",
            "'shop events' is not a module name",
            id="not a module name",
        ),
    ],
)
@pytest.mark.parametrize("command", [["gateway"], ["producers", "echo", "--count", "1"]])
def test_a_module_that_cannot_be_used_stops_the_process_in_one_line(
    shop: dict[str, str], modules: str, says: str, command: list[str]
) -> None:
    done = run_cli(*command, env={**shop, "SSE_EVENT_MODULES": modules})
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line, done.stderr
    assert line.startswith(f"python -m {command[0]}: error: ")
    assert says in line
