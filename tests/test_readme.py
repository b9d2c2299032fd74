"""The README runs as written: every block it shows is executed or checked here.

Console sessions run in bash against a gateway and a Redis of the test's own (the
README's ``127.0.0.1:8000`` and ``127.0.0.1:6379`` stand for them), their output
compared with the README's after ``normalise``; Python blocks are the files of
docs/examples, which the sessions run; the browser snippet runs in Chromium. The
conventions are in tests/support/readme.py.

Events come from a conductor, a ``Publisher`` like the producers' that publishes
``echo`` and ``reverse_echo`` in turn from the moment a stream opens, so that what a
stream over both channels shows first is the same on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from contract.events import Echo, EchoPayload, ReverseEcho
from contract.wire import Keyspace
from gateway.errors import GatewayError
from gateway.settings import GatewaySettings
from producers.publisher import Publisher
from producers.settings import ProducerSettings
from tests.support.browser import chromium
from tests.support.ports import free_port
from tests.support.processes import ROOT, GatewayProcess, ProducerProcess
from tests.support.readme import (
    MORE,
    Block,
    Command,
    ReadmeError,
    normalise,
    output_matches,
    parse,
)
from tests.support.redis_server import RedisServer, new_redis_server

README = ROOT / "README.md"
BLOCKS = parse(README)
EXAMPLES = ROOT / "docs" / "examples"
README_GATEWAY = "127.0.0.1:8000"
README_REDIS = "127.0.0.1:6379"
GATEWAY_START = re.compile(r"(-m gateway|redis-sse-gateway)\b[^|;]*&\s*$")
COMMAND_TIMEOUT = 30.0


def _blocks(kind: str) -> list[Block]:
    return [block for block in BLOCKS if block.kind == kind]


def _block_id(block: Block) -> str:
    commands = block.commands() if block.kind in ("console", "sh") else []
    first = commands[0].text.split("\n")[0] if commands else block.body.split("\n")[0]
    return f"line{block.line}:{first[:40]}"


class Conductor:
    """Publishes ``echo`` "hello" and ``reverse_echo`` "olleh" in turn, 0.5 s apart, for
    4 s after any gateway it watches opens a stream (restarting with ``echo``).

    The producer processes of ``./scripts/run`` publish on their own clocks, so which
    channel a new stream hears first would change from run to run; the conductor
    publishes the same events through the same ``Publisher``, in step with the streams.
    """

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.gateways: list[GatewayProcess] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.seeded = threading.Event()
        self.error: Exception | None = None
        # (turns of the loop, whether the last one had nothing scheduled)
        self._turns = threading.Condition()
        self._turn = 0
        self._idle = False

    def __enter__(self) -> Conductor:
        self._thread.start()
        assert self.seeded.wait(30), "the conductor could not publish"
        self.check()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    async def _opened(self, client: httpx.AsyncClient) -> int:
        total = 0
        for gateway in list(self.gateways):
            if gateway.process.poll() is None:
                try:
                    answer = await client.get(f"{gateway.base_url}/stats", timeout=2)
                    total += answer.json()["streams"]["total"]
                except (httpx.HTTPError, ValueError):
                    pass
        return total

    async def _run(self) -> None:
        try:
            await self._conduct()
        except Exception as error:  # surfaced by check(), not lost with the thread
            self.error = error
            self.seeded.set()
            self._turned(True)
            raise

    def check(self) -> None:
        assert self.error is None, f"the conductor stopped: {self.error!r}"

    def wait_quiet(self, timeout: float = 15.0) -> None:
        """Until a turn that began after this call finds nothing left to publish: a block
        that reads history must not see the end of the previous block's events."""
        with self._turns:
            first = self._turn + 2
            quiet = self._turns.wait_for(
                lambda: self.error is not None or (self._turn >= first and self._idle),
                timeout,
            )
        self.check()
        assert quiet, f"the conductor was still publishing after {timeout}s"

    def _turned(self, idle: bool) -> None:
        with self._turns:
            self._turn += 1
            self._idle = idle
            self._turns.notify_all()

    async def _conduct(self) -> None:
        events = [
            ("echo", Echo(data=EchoPayload(message="hello"))),
            ("reverse_echo", ReverseEcho(data=EchoPayload(message="olleh"))),
        ]
        async with Publisher.from_url(self.redis_url) as publisher, httpx.AsyncClient() as client:
            self.seeded.set()
            seen = 0
            publish_at: float | None = None
            turn = 0
            while not self._stop.is_set():
                opened = await self._opened(client)
                now = time.monotonic()
                if opened != seen:
                    seen = opened
                    # Give the stream time to subscribe before its first live event.
                    cycle_start, publish_at, turn = now, now + 0.25, 0
                if publish_at is not None and now >= publish_at:
                    channel, event = events[turn % 2]
                    await publisher.publish(channel, event)
                    turn += 1
                    publish_at = publish_at + 0.5 if now - cycle_start < 4 else None
                self._turned(publish_at is None)
                await asyncio.sleep(0.03)


class Stack:
    """One Redis, the conductor, and gateways started on demand, per settings."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.conductor = Conductor(redis.url)
        self._gateways: dict[tuple[tuple[str, str], ...], GatewayProcess] = {}
        self._all: list[GatewayProcess] = []

    def gateway(self, env: dict[str, str], *, fresh: bool = False) -> GatewayProcess:
        key = tuple(sorted(env.items()))
        if fresh or key not in self._gateways:
            gateway = GatewayProcess(self.redis.url, env=env)
            self._all.append(gateway)
            self.conductor.gateways.append(gateway)
            self._gateways[key] = gateway
        return self._gateways[key]

    def close(self) -> None:
        for gateway in self._all:
            gateway.close()


def _seed_history(redis: RedisServer) -> None:
    """Six events per channel, from the producer processes ``./scripts/run`` starts."""
    producers = [
        ProducerProcess(redis.url, kind, interval=0.05, count=6)
        for kind in ("echo", "reverse-echo")
    ]
    try:
        for producer in producers:
            assert producer.wait(timeout=60) == 0, producer.log()
    finally:
        for producer in producers:
            producer.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    redis = new_redis_server(prefer_container=False)
    stack = Stack(redis)
    try:
        _seed_history(redis)
        with stack.conductor:
            yield stack
    finally:
        stack.close()
        redis.close()


class Session:
    """A bash process that runs one command at a time and returns what it printed."""

    def __init__(self, env: dict[str, str]) -> None:
        self._marker = f"__readme_{secrets.token_hex(8)}__"
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its group holds only what its commands started
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT) -> str:
        assert self.process.stdin is not None
        # stdin stays ours: a command reads /dev/null, not the rest of the session.
        # $? is the previous command's status (``echo $?``), not that of the marker's printf.
        self.process.stdin.write(
            f"(exit ${{_status:-0}}); {{\n{command}\n}} < /dev/null; _status=$?\n"
            f"printf '\\n{self._marker}\\n'\n"
        )
        self.process.stdin.flush()
        output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no end within {timeout}s: {command}") from None
            if line is None:
                raise AssertionError(f"bash exited during: {command}\n{''.join(output)}")
            if line.rstrip("\n") == self._marker:
                return "".join(output)
            output.append(line)

    def variable(self, name: str) -> str:
        return self.run(f'printf "%s" "${name}"').rstrip("\n")

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        # A command that outlived its timeout (a curl without --max-time) goes with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def _session_env(stack: Stack, gateway: GatewayProcess | None) -> dict[str, str]:
    # A user's shell: none of the settings or uv variables that scripts/test exports.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSE_", "UV_"))}
    env["REDIS_URL"] = stack.redis.url
    env["COLUMNS"] = "80"  # argparse's --help wraps at the terminal's width
    env.pop("PYTHONPATH", None)
    if gateway is not None:
        env["GATEWAY_URL"] = gateway.base_url
    return env


def _substitute(text: str, gateways: dict[str, GatewayProcess], redis: RedisServer) -> str:
    """The README's addresses in ``text`` replaced by those of the test's servers."""
    text = text.replace(README_REDIS, f"127.0.0.1:{redis.port}")
    for address, gateway in gateways.items():
        text = text.replace(address, f"127.0.0.1:{gateway.port}")
    return text


def _unsubstitute(text: str, gateways: dict[str, GatewayProcess], redis: RedisServer) -> str:
    text = text.replace(f"127.0.0.1:{redis.port}", README_REDIS)
    for address, gateway in gateways.items():
        text = text.replace(f"127.0.0.1:{gateway.port}", address)
    return text


def _mismatch(block: Block, command: Command, actual: str) -> str:
    shown = "\n".join(command.expected) + ("\n..." if command.more else "")
    return (
        f"README line {command.line}: {command.text}\n--- README shows (normalised):\n"
        f"{normalise(shown)}\n--- it printed (normalised):\n{normalise(actual)}"
    )


def _fixed_settings(block: Block) -> dict[str, str]:
    settings = block.gateway or {}
    missing = [name for name, value in settings.items() if value is None]
    assert not missing, f"line {block.line}: no command of the block gives {missing} a value"
    return {name: value for name, value in settings.items() if value is not None}


@pytest.mark.parametrize("block", _blocks("console"), ids=_block_id)
def test_console_session_prints_what_the_readme_shows(stack: Stack, block: Block) -> None:
    stack.conductor.wait_quiet()
    commands = block.commands()
    gateways: dict[str, GatewayProcess] = {}
    if not any(GATEWAY_START.search(command.text) for command in commands):
        gateways[README_GATEWAY] = stack.gateway(_fixed_settings(block))
    session = Session(_session_env(stack, gateways.get(README_GATEWAY)))
    try:
        for command in commands:
            if GATEWAY_START.search(command.text):
                address, gateway = _start_gateway_of(stack, block, command, session)
                gateways[address] = gateway
                actual = ""
            else:
                actual = session.run(_substitute(command.text, gateways, stack.redis))
            actual = _unsubstitute(actual, gateways, stack.redis)
            assert output_matches(command.expected, command.more, actual), _mismatch(
                block, command, actual
            )
    finally:
        session.close()


def _start_gateway_of(
    stack: Stack, block: Block, command: Command, session: Session
) -> tuple[str, GatewayProcess]:
    """The block's ``python -m gateway ... &``, on a free port instead of its own: its
    settings are those ``readme-gateway`` names, with the values the session gave them."""
    settings = block.gateway
    assert settings is not None, f"line {command.line}: starts a gateway without readme-gateway"
    env: dict[str, str] = {}
    for name, value in settings.items():
        env[name] = session.variable(name) if value is None else value
        assert env[name], f"line {command.line}: {name} has no value in the session"
        if value is not None:
            assert f"{name}={value}" in command.text, f"line {command.line}: {name}={value}"
    port = re.search(r"--port (\d+)", command.text)
    gateway = stack.gateway(env, fresh=True)
    session.run(f"export GATEWAY_URL={gateway.base_url}")
    return f"127.0.0.1:{port.group(1) if port else 8000}", gateway


def test_python_blocks_are_the_example_files() -> None:
    shown = {block.file: block.body for block in _blocks("python")}
    for name, body in shown.items():
        assert name is not None
        assert body == (ROOT / name).read_text(), f"README's {name} differs from the file"
    examples = {f"docs/examples/{path.name}" for path in EXAMPLES.glob("*.py")}
    assert set(shown) == examples, "every example is shown, and only examples are"


def test_every_example_runs_in_a_readme_session() -> None:
    """Each example a console block runs (price_events: the gateway imports it)."""
    console = "\n".join(c.text for block in _blocks("console") for c in block.commands())
    for path in EXAMPLES.glob("*.py"):
        ran = f"docs/examples/{path.name}" in console
        imported = f"SSE_EVENT_MODULES={path.stem}" in console
        assert ran or imported, f"no README session runs docs/examples/{path.name}"


def _browser_pairs() -> list[tuple[Block, Block]]:
    return [(block, BLOCKS[i + 1]) for i, block in enumerate(BLOCKS) if block.kind == "js"]


@pytest.mark.parametrize(("snippet", "console"), _browser_pairs(), ids=lambda b: f"line{b.line}")
async def test_browser_snippet_logs_what_the_readme_shows(
    stack: Stack, snippet: Block, console: Block
) -> None:
    gateway = stack.gateway(_fixed_settings(snippet))
    expected = [normalise(line) for line in console.body.splitlines() if line and line != MORE]
    logged: list[str] = []
    shown = asyncio.Event()

    def log(text: str) -> None:
        logged.append(normalise(text))
        if all(line in logged for line in expected):
            shown.set()

    async with chromium() as browser:
        page = await browser.new_page()
        page.on("console", lambda message: log(message.text))
        await page.goto(f"{gateway.base_url}/healthz")
        await page.add_script_tag(content=snippet.body)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shown.wait(), timeout=15)
    missing = [line for line in expected if line not in logged]
    assert not missing, f"the console never showed {missing}; it showed {logged}"


# Commands of ```sh blocks: what each is checked with, since it cannot run here.
def _script_exists(command: str) -> None:
    script = ROOT / command.split()[-1 if command.startswith("PORT=") else 0].removeprefix("./")
    assert os.access(script, os.X_OK), f"{script} is not an executable script"


def _succeeds(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the repository; it must exit 0."""
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result


def _uv_lock_matches(command: str) -> None:
    _succeeds(str(ROOT / ".tools" / "uv" / "bin" / "uv"), "lock", "--check", "--offline")


def _compose_serves(command: str) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"redis", "nginx"} <= set(compose["services"])
    ports = " ".join(
        str(port) for service in compose["services"].values() for port in service.get("ports", [])
    )
    for needed in re.findall(r"127\.0\.0\.1:(\d+)", command):
        assert needed in ports, f"docker-compose.yml publishes no port {needed}"


def _python_module_help(command: str) -> None:
    module = re.search(r"-m ([\w.]+)", command)
    assert module is not None
    result = _succeeds(str(ROOT / ".venv" / "bin" / "python"), "-m", module.group(1), "--help")
    for option in re.findall(r"(--[a-z-]+)", command):
        assert option in result.stdout, f"{module.group(1)} has no {option}"


SH_CHECKS = [
    (re.compile(r"^(PORT=\d+ )?\./scripts/(run|test|setup-env)\b"), _script_exists),
    (re.compile(r"^\.tools/uv/bin/uv lock\b"), _uv_lock_matches),
    (re.compile(r"^(docker compose|curl .*127\.0\.0\.1:(8080|8443))"), _compose_serves),
    (re.compile(r"^\.venv/bin/python -m bench\b"), _python_module_help),
]


@pytest.mark.parametrize("block", _blocks("sh"), ids=_block_id)
def test_commands_that_cannot_run_here_are_checked(block: Block) -> None:
    for command in block.commands():
        text = command.text.split("#")[0].strip()
        checks = [check for pattern, check in SH_CHECKS if pattern.search(text)]
        assert checks, f"README line {command.line}: no check for {text!r}"
        checks[0](text)


def test_the_run_command_serves_both_channels() -> None:
    """./scripts/run against a Redis that answers: it says what it writes there, both
    channels stream, and SIGTERM stops everything with exit status 0."""
    redis = new_redis_server(prefer_container=False)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSE_")}
    env.update(REDIS_URL=redis.url, PORT=str(port))
    with open(os.devnull, "rb") as stdin:
        run = subprocess.Popen(
            [str(ROOT / "scripts" / "run")],
            cwd=ROOT,
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(run.stdout or []), daemon=True)
    reader.start()
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{port}/sse?channel=echo&channel=reverse_echo"
        while seen != {"echo", "reverse_echo"} and time.monotonic() < deadline:
            try:
                with httpx.stream("GET", url, timeout=5) as stream:
                    for line in stream.iter_lines():
                        if line.startswith("event: "):
                            seen.add(line.removeprefix("event: "))
                        if seen == {"echo", "reverse_echo"} or time.monotonic() > deadline:
                            break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert seen == {"echo", "reverse_echo"}, "".join(output)
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 0, "".join(output)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)  # its own session: only what it started
            run.wait(timeout=10)
        reader.join(timeout=10)
        redis.close()
    keys = Keyspace()
    said = "".join(output)
    for channel in ("echo", "reverse_echo"):
        assert keys.history_key(channel) in said, said
        assert keys.live_channel(channel) in said, said


def test_console_scripts_are_the_documented_commands() -> None:
    """README documents the console scripts pyproject.toml installs, as what they are."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    text = README.read_text()
    for name in scripts:
        assert f"`{name}`" in text, f"README does not mention {name}"
        assert (ROOT / ".venv" / "bin" / name).exists(), f".venv/bin/{name} not installed"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_the_seed_article_and_what_exists() -> None:
    text = README.read_text()
    assert "https://zenn.dev/akishichinibu/articles/1423539f71d8c2" in text
    for target in re.findall(r"\]\(((?:docs|deploy)/[^)#]+)", text):
        assert (ROOT / target).exists(), f"README links {target}, which does not exist"
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", text):
        assert anchor in anchors, f"README links #{anchor}, which no heading makes"
    performance = (ROOT / "docs" / "performance.md").read_text()
    moved = {_anchor(h) for h in re.findall(r"^#+ (.+)$", performance, re.MULTILINE)}
    for anchor in re.findall(r"docs/performance\.md#([^)]+)\)", text):
        assert anchor in moved, f"README links docs/performance.md#{anchor}, not a heading"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _environment_names(settings: type[BaseSettings]) -> set[str]:
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.add(str(alias.choices[0]))
        else:
            names.add(f"SSE_{name.upper()}")
    return names


def test_the_configuration_table_names_every_setting() -> None:
    """Every variable the gateway and the producers read has a row, and no row is stale."""
    rows = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", _section("Configuration"), re.MULTILINE))
    read = _environment_names(GatewaySettings) | _environment_names(ProducerSettings)
    read.add("PROMETHEUS_MULTIPROC_DIR")  # read by python -m gateway itself, not a setting
    assert sorted(read - rows) == [], "settings missing from README's Configuration table"
    assert sorted(rows - read) == [], "rows of README's Configuration table nobody reads"


def test_the_metrics_table_names_what_a_gateway_exports(stack: Stack) -> None:
    documented = set(re.findall(r"^\| `(sse_gateway_\w+)` \|", _section("Operations"), re.M))
    gateway = stack.gateway({"SSE_METRICS_CHANNEL_LABELS": "4"})
    exported = httpx.get(f"{gateway.base_url}/metrics", timeout=10).text
    types = set(re.findall(r"^# TYPE (\w+) (\w+)$", exported, re.MULTILINE))
    # Counters are read as name_total, whether or not the TYPE line says so.
    names = {
        name if kind != "counter" or name.endswith("_total") else f"{name}_total"
        for name, kind in types
    }
    assert documented, "no metrics table found"
    assert sorted(documented - names) == [], "README documents metrics a gateway does not export"
    ours = {name for name in names if name.startswith("sse_gateway_")}
    assert sorted(ours - documented) == [], "metrics the README's table leaves out"


def test_the_errors_table_names_every_error_code() -> None:
    def subclasses(cls: type[GatewayError]) -> list[type[GatewayError]]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    codes = {cls.code for cls in subclasses(GatewayError)}
    codes |= {"request_head_too_large", "request_head_timeout", "cors_rejected"}
    codes |= {"not_found", "method_not_allowed", "invalid_parameter"}
    table = _section("What a client sees")
    missing = sorted(code for code in codes if f"`{code}`" not in table)
    assert missing == [], "error codes missing from README's Errors table"


@pytest.mark.parametrize(
    ("markdown", "complaint"),
    [
        ("```\nls\n```\n", "kind '(none)'"),
        ("```bash\nls\n```\n", "kind 'bash'"),
        ("```python\nprint(1)\n```\n", "readme-file"),
        (
            "<!-- readme-file: docs/examples/publish.py -->\n\ntext\n```python\nx\n```\n",
            "readme-file",
        ),
        ("```js\nconsole.log(1)\n```\n", "readme-browser"),
        ("<!-- readme-browser -->\n```js\nconsole.log(1)\n```\n", "followed by a text block"),
        ("```console\noutput first\n$ ls\n```\n", "must start with '$ '"),
        ("```console\n$ ls\n...\nmore\n```\n", "'...' may only end"),
        ("```console\n$ ls\n", "never closed"),
    ],
)
def test_a_block_outside_the_conventions_fails(
    tmp_path: Path, markdown: str, complaint: str
) -> None:
    path = tmp_path / "README.md"
    path.write_text(markdown)
    with pytest.raises(ReadmeError, match=re.escape(complaint)):
        parse(path)


def test_output_is_compared_after_normalising() -> None:
    shown = ("id: echo=1796117052914-0", 'data: {"at":"2026-12-01T09:24:13.915599Z"}')
    printed = 'id: echo=1796200000000-3\ndata: {"at":"2027-01-02T03:04:05Z"}\n\n'
    assert output_matches(shown, False, printed)
    assert not output_matches(shown, False, printed + "one more line\n")
    assert output_matches(shown, True, printed + "one more line\n")
    assert not output_matches(shown, False, printed.replace("echo=", "other="))
    assert normalise("pid=4711 eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ.c2ln") == "pid=<pid> <token>"
