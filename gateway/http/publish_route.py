"""``POST /channels/{channel}/events``: publish an event over HTTP.

Off unless ``SSE_HTTP_PUBLISH=true``. The body is ``{"event": name, "data": payload}``:
the name must be a registered event type (``GET /events/schema``; user types come
from ``SSE_EVENT_MODULES``) and not a control event, and the payload must validate
against that type's payload class. The event then goes through the producers'
``Publisher`` (``producers.publisher``): the same script, retention
(``SSE_HISTORY_*``), replica confirmation (``SSE_PUBLISH_REPLICAS``) and Redis Cluster
routing as ``python -m producers``.

An ``Idempotency-Key`` header becomes the event's publish token: a second request
with the key (within ``SSE_PUBLISH_IDEMPOTENCY_SECONDS``) publishes nothing and gets
the first one's id, whatever its body. Each step refuses bad input before anything is
written: the channel, the token (``publish`` claim), the key, the content type, the
size, the JSON, the event name, the payload.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictStr, ValidationError
from redis.exceptions import RedisError

from contract.control import CONTROL_EVENT_NAMES
from contract.events import BaseEvent, UnknownEvent, event_class, registered_events
from contract.redis_target import RedisConfigError
from gateway.auth import TokenVerifier
from gateway.errors import (
    EventNotPublishable,
    InvalidBody,
    InvalidEventData,
    InvalidIdempotencyKey,
    PublishDisabled,
    PublishUnavailable,
    UnknownEventType,
)
from gateway.http.error_responses import documented_errors
from gateway.http.params import CHANNEL_PATH
from gateway.http.request_body import JSON_MEDIA_TYPE, read_json
from gateway.http.stream_route import validate_channels
from gateway.resume.cursor import single_channel_cursor
from gateway.runtime import Runtime

log = logging.getLogger(__name__)

PUBLISH_PATH = "/channels/{channel}/events"
MAX_KEY_LENGTH = 128
_KEY_RE = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_LENGTH}}}")
KEY_TOKEN_PREFIX = "key:"
"""Before an Idempotency-Key in the entry's token: random tokens never contain ':'."""

router = APIRouter()


class PublishRequest(BaseModel):
    """What ``POST /channels/{channel}/events`` reads."""

    model_config = ConfigDict(extra="forbid")

    event: StrictStr = Field(description="An event type's SSE name (see GET /events/schema).")
    data: JsonValue = Field(description="The payload, valid for that event type.")


class Published(BaseModel):
    """Where the event went: its entry id, and a cursor to resume a stream of the channel."""

    id: str = Field(description="The entry id in the channel's history.")
    channel: str
    event: str
    cursor: str = Field(
        description="The Last-Event-ID of a stream of this channel alone after this event."
    )


# By hand: the route reads its body itself (size limit, strict JSON), and pydantic's
# schema of JsonValue is a $ref that would not resolve inside the OpenAPI document.
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        JSON_MEDIA_TYPE: {
            "schema": {
                "type": "object",
                "required": ["event", "data"],
                "additionalProperties": False,
                "properties": {
                    "event": {
                        "type": "string",
                        "description": "An event type's SSE name (see GET /events/schema).",
                    },
                    "data": {"description": "The payload, valid for that event type."},
                },
            },
            "example": {"event": "echo", "data": {"message": "hello"}},
        }
    },
}


@router.post(
    PUBLISH_PATH,
    summary="Publish an event to a channel (SSE_HTTP_PUBLISH=true)",
    status_code=201,
    response_model=Published,
    responses=documented_errors(400, 401, 403, 404, 408, 413, 415, 422, 503),
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def publish(
    request: Request,
    channel: Annotated[str, CHANNEL_PATH],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Publish once: a repeat with this key (1-128 visible ASCII characters) "
            "within SSE_PUBLISH_IDEMPOTENCY_SECONDS returns the first request's id.",
        ),
    ] = None,
) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    publisher = runtime.publisher
    if publisher is None:
        raise PublishDisabled(
            "HTTP publishing is off on this gateway",
            "publish with python -m producers or producers.Publisher, or ask the operator to"
            " set SSE_HTTP_PUBLISH=true",
        )
    (channel,) = validate_channels([channel], 1, settings.channel_pattern)
    auth: TokenVerifier | None = request.app.state.auth
    if auth is not None:
        auth.authorize_publish(request, channel)
    token = publish_token(idempotency_key)
    raw = await read_json(request, settings.publish_max_body_bytes, settings.publish_timeout)
    body = parse_request(raw)
    event = build_event(body)
    try:
        # The wait for a slot counts: when Redis is slow, requests queue here, bounded.
        async with asyncio.timeout(settings.publish_timeout), runtime.publish_slots:
            entry_id = await publisher.publish(
                channel,
                event,
                token=token,
                dedupe_window_ms=int(settings.publish_idempotency_seconds * 1000) if token else 0,
            )
    except TimeoutError:
        raise _unavailable(
            f"Redis did not take the event within {settings.publish_timeout:g} s"
            " (SSE_PUBLISH_TIMEOUT)",
            token,
        ) from None
    except (RedisConfigError, RedisError) as exc:
        # A server that contradicts the settings, or refuses the script (OOM, an ACL...).
        log.error("HTTP publish to %r refused by Redis: %s", channel, exc)
        raise _unavailable(f"Redis refused the publish: {exc}", token) from None
    published = Published(
        id=entry_id,
        channel=channel,
        event=event.event_name,
        cursor=single_channel_cursor(channel, entry_id.encode()).decode(),
    )
    return JSONResponse(published.model_dump(), status_code=201)


def publish_token(idempotency_key: str | None) -> str | None:
    """The publish token an Idempotency-Key stands for (None: a random one per event)."""
    if idempotency_key is None:
        return None
    if _KEY_RE.fullmatch(idempotency_key) is None:
        raise InvalidIdempotencyKey(
            f"the Idempotency-Key {idempotency_key[:40]!r} is not 1-{MAX_KEY_LENGTH} visible"
            " ASCII characters",
            "use a fresh UUID per event, and send the same one again only to retry it",
        )
    return KEY_TOKEN_PREFIX + idempotency_key


def parse_request(value: Any) -> PublishRequest:
    """The body as a ``PublishRequest``; 422 with pydantic's errors otherwise."""
    try:
        return PublishRequest.model_validate(value)
    except ValidationError as exc:
        raise InvalidBody(
            'the body is not {"event": <name>, "data": <payload>}',
            'send {"event": "echo", "data": {"message": "hello"}}; event types and their'
            " payloads: GET /events/schema",
            errors=validation_errors(exc),
        ) from None


def build_event(body: PublishRequest) -> BaseEvent[Any]:
    """The typed event the body names, its payload validated against the type."""
    if body.event in CONTROL_EVENT_NAMES:
        raise EventNotPublishable(
            f"{body.event!r} is a control event: only the gateway sends it",
            f"publish one of: {', '.join(publishable_events())}",
        )
    try:
        cls = event_class(body.event)
    except UnknownEvent:
        raise UnknownEventType(
            f"no event type is named {body.event[:80]!r}",
            f"publish one of: {', '.join(publishable_events())}; types of your own come from"
            " SSE_EVENT_MODULES",
        ) from None
    try:
        event = cls.model_validate({"data": body.data})
        # The bytes clients will decode must decode to the event again (an infinite
        # float, for one, would be written as null).
        cls.decode_data(event.encode_data())
    except ValidationError as exc:
        raise InvalidEventData(
            f"the data is not a valid {body.event!r} payload",
            f"GET /events/schema shows the schema of {body.event!r}",
            errors=validation_errors(exc),
        ) from None
    return event


def publishable_events() -> list[str]:
    return [name for name in registered_events() if name not in CONTROL_EVENT_NAMES]


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as JSON: where (``loc``), what (``msg``), which check (``type``)."""
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _unavailable(message: str, token: str | None) -> PublishUnavailable:
    retry = (
        "retry with the same Idempotency-Key: it publishes the event once"
        if token
        else "the event may still have been published; send an Idempotency-Key to retry safely"
    )
    return PublishUnavailable(message, retry, headers={"Retry-After": "1"})
