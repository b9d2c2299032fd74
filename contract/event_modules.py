"""User event types: ``SSE_EVENT_MODULES`` names the modules that define them.

An event class registers itself when its module is imported (``contract.events``),
so a process knows a user's event types once it has imported the user's modules.
The gateway (for ``/events/schema`` and HTTP publish) and the producers import the
modules of ``SSE_EVENT_MODULES`` at start; any other process that decodes events by
name can call ``load_from_environment()``.

A module that cannot be imported, or that defines an event class whose SSE name
another class already has, stops the process at start with one line naming the
module and why (``EventModuleError``).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator
from pydantic_settings import NoDecode

from contract.events import BaseEvent, DuplicateEventName, registered_events

ENV_VAR = "SSE_EVENT_MODULES"
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", re.ASCII)


class EventModuleError(ValueError):
    """A module of ``SSE_EVENT_MODULES`` that cannot be used; the message is one line."""


def split_module_names(value: Any) -> Any:
    """``"myapp.events, other.events"`` -> ``("myapp.events", "other.events")``."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def check_module_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The names if each is a dotted Python module name; ValueError says which is not."""
    for name in names:
        if _MODULE_NAME.fullmatch(name) is None:
            raise ValueError(
                f"{name[:80]!r} is not a module name: give dotted Python module names"
                " separated by commas, like myapp.events,other.events"
            )
    return names


EventModules = Annotated[
    tuple[str, ...],
    NoDecode,  # a comma-separated list, not JSON
    BeforeValidator(split_module_names),
    AfterValidator(check_module_names),
]
"""The type of an ``event_modules`` setting (``SSE_EVENT_MODULES``)."""


def load_event_modules(names: Iterable[str]) -> list[type[BaseEvent[Any]]]:
    """Import each module; return the event classes that registered meanwhile.

    Importing a module again is free, so every process (and every worker) may call
    this at start. Raises ``EventModuleError`` with a one-line message.
    """
    before = set(registered_events().values())
    for name in names:
        try:
            importlib.import_module(name)
        except DuplicateEventName as exc:
            raise EventModuleError(f"{ENV_VAR}: module {name!r}: {exc}") from None
        except (Exception, SystemExit) as exc:  # whatever the module raised, said in a line
            raise EventModuleError(
                f"{ENV_VAR}: cannot import {name!r}: {_one_line(exc)}{_hint(name, exc)}"
            ) from None
    return [cls for cls in registered_events().values() if cls not in before]


def load_from_environment(environ: Mapping[str, str] = os.environ) -> list[type[BaseEvent[Any]]]:
    """``load_event_modules`` for the modules ``SSE_EVENT_MODULES`` names (if set)."""
    try:
        names = check_module_names(split_module_names(environ.get(ENV_VAR, "")))
    except ValueError as exc:
        raise EventModuleError(f"{ENV_VAR}: {exc}") from None
    return load_event_modules(names)


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else "(no message)"
    if isinstance(exc, ModuleNotFoundError):
        return text
    return f"{type(exc).__name__}: {text}"


def _hint(name: str, exc: BaseException) -> str:
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing is not None and (name == missing or name.startswith(missing + ".")):
        return " (is the directory that holds it on PYTHONPATH?)"
    return ""
