"""Typed events: ``BaseEvent[T]`` and the registry that maps SSE event names to classes.

An event's SSE name is its class name in snake_case (``ReverseEcho`` ->
``reverse_echo``). The SSE ``data:`` line is the JSON of ``event.data`` only,
so a browser reads ``{"message":"hello","created_at":"..."}``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

T = TypeVar("T")

_registry: dict[str, type[BaseEvent[Any]]] = {}
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def snake_case(name: str) -> str:
    """``ReverseEcho`` -> ``reverse_echo``; ``HTTPPing`` -> ``http_ping``."""
    return _CAMEL_BOUNDARY.sub("_", name).lower()


class UnknownEvent(LookupError):
    """No registered event class carries this SSE event name."""


class DuplicateEventName(TypeError):
    """Two different event classes would carry one SSE event name."""

    def __init__(self, name: str, first: type, second: type) -> None:
        self.name = name
        self.classes = (full_name(first), full_name(second))
        super().__init__(
            f"two event classes are named {name!r} on the wire: {self.classes[0]} and"
            f" {self.classes[1]}; rename one (the SSE name is the class name in snake_case)"
        )


def full_name(cls: type) -> str:
    """``module.QualifiedName`` of a class: how errors name an event class."""
    return f"{cls.__module__}.{cls.__qualname__}"


class BaseEvent(BaseModel, Generic[T]):
    """An event with a typed payload. Subclass with a concrete ``T`` to register it."""

    model_config = ConfigDict(frozen=True)

    event_name: ClassVar[str] = ""
    _data_adapter: ClassVar[TypeAdapter[Any]]

    data: T

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        metadata = cls.__pydantic_generic_metadata__
        # ``BaseEvent[X]`` itself is a parametrised helper class, not an event type.
        if metadata["origin"] is not None or metadata["parameters"]:
            return
        name = snake_case(cls.__name__)
        existing = _registry.get(name)
        # The same class defined again (a module reloaded) replaces itself; any other
        # class would make the name mean two things to the gateway and its clients.
        if existing is not None and full_name(existing) != full_name(cls):
            raise DuplicateEventName(name, existing, cls)
        cls.event_name = name
        annotation: Any = cls.model_fields["data"].annotation
        cls._data_adapter = TypeAdapter(annotation)
        _registry[name] = cls

    def encode_data(self) -> bytes:
        """The payload as compact JSON: the exact bytes of the SSE ``data:`` line."""
        return type(self)._data_adapter.dump_json(self.data)

    @classmethod
    def decode_data(cls, raw: bytes | str) -> BaseEvent[T]:
        """Rebuild an event of this class from the bytes of its ``data:`` line."""
        return cls(data=cls._data_adapter.validate_json(raw))


def event_class(name: str) -> type[BaseEvent[Any]]:
    """The registered class for an SSE event name."""
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry))
        raise UnknownEvent(f"no event type named {name!r} (known: {known})") from None


def decode_event(name: str, data: bytes | str) -> BaseEvent[Any]:
    """Decode an SSE (event name, data) pair into its typed event."""
    return event_class(name).decode_data(data)


def registered_events() -> dict[str, type[BaseEvent[Any]]]:
    """Every registered event type by SSE name."""
    return dict(sorted(_registry.items()))


def event_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every registered event type's payload, keyed by SSE name."""
    return {name: cls._data_adapter.json_schema() for name, cls in registered_events().items()}


def utc_now() -> datetime:
    return datetime.now(UTC)


class EchoPayload(BaseModel):
    """What ``Echo`` and ``ReverseEcho`` carry."""

    model_config = ConfigDict(frozen=True)

    message: str
    created_at: datetime = Field(default_factory=utc_now)


class Echo(BaseEvent[EchoPayload]):
    """A message as it was sent."""


class ReverseEcho(BaseEvent[EchoPayload]):
    """A message reversed (``hello`` -> ``olleh``)."""
