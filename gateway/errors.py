"""Client errors: one hierarchy, each class with its HTTP status and error code.

Raised wherever a request turns out to be wrong; ``gateway.http.error_responses``
is the one place that turns them into a status and a JSON body.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base of every error the gateway answers with a 4xx/5xx JSON body."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        hint: str = "",
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.headers = headers
        self.errors = errors
        """Itemised problems (pydantic's validation errors), for the body's ``errors``."""


class InvalidChannel(GatewayError):
    code = "invalid_channel"


class NoChannels(GatewayError):
    code = "no_channels"


class TooManyChannels(GatewayError):
    code = "too_many_channels"


class RepeatedParameter(GatewayError):
    code = "repeated_parameter"


class HttpVersionNotSupported(GatewayError):
    """A stream asked for over HTTP/1.0, which cannot frame an endless body as it is sent."""

    status_code = 505
    code = "http_version_not_supported"


class TooManyStreams(GatewayError):
    status_code = 503
    code = "too_many_streams"


class TooManyStreamsForSubject(GatewayError):
    """The token's subject holds its maximum of streams on this process."""

    status_code = 429
    code = "too_many_streams_for_subject"


class MissingToken(GatewayError):
    """Auth is on and the request carries no token."""

    status_code = 401
    code = "token_missing"


class InvalidToken(GatewayError):
    """A token that is malformed, badly signed, or fails a claim check."""

    status_code = 401
    code = "token_invalid"


class ExpiredToken(InvalidToken):
    code = "token_expired"


class ChannelForbidden(GatewayError):
    """A valid token whose channel claim does not cover a requested channel."""

    status_code = 403
    code = "channel_forbidden"


class PublishForbidden(ChannelForbidden):
    """A valid token whose publish claim does not cover the channel (or that has none)."""

    code = "publish_forbidden"


class PublishDisabled(GatewayError):
    """HTTP publish is off on this gateway (``SSE_HTTP_PUBLISH``)."""

    status_code = 404
    code = "publish_disabled"


class UnsupportedMediaType(GatewayError):
    status_code = 415
    code = "unsupported_media_type"


class BodyTooLarge(GatewayError):
    status_code = 413
    code = "body_too_large"


class BodyTimeout(GatewayError):
    status_code = 408
    code = "body_timeout"


class InvalidJson(GatewayError):
    code = "invalid_json"


class InvalidBody(GatewayError):
    """JSON of the wrong shape; ``errors`` itemises what."""

    status_code = 422
    code = "invalid_body"


class UnknownEventType(GatewayError):
    status_code = 404
    code = "unknown_event"


class EventNotPublishable(GatewayError):
    """A control event name: only the gateway itself sends those."""

    status_code = 403
    code = "event_not_publishable"


class InvalidEventData(GatewayError):
    """Data that the event type's payload refuses; ``errors`` are pydantic's."""

    status_code = 422
    code = "invalid_event_data"


class InvalidIdempotencyKey(GatewayError):
    code = "invalid_idempotency_key"


class PublishUnavailable(GatewayError):
    """Redis did not take the event in time; it may still have been published."""

    status_code = 503
    code = "publish_unavailable"


class InvalidHistoryQuery(GatewayError):
    """A history position or limit that cannot be read."""

    code = "invalid_history_query"


class MetricsOff(GatewayError):
    """``GET /metrics`` on a gateway with SSE_METRICS=false."""

    status_code = 404
    code = "metrics_off"
