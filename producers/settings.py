"""Producer settings from the environment (``REDIS_URL``, ``SSE_*``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.event_modules import EventModules
from producers.publisher import WAIT_TIMEOUT_MS, Publisher, Retention


class PublishSettings(BaseModel):
    """How every publish trims history and waits for replicas.

    Shared by the producers' settings and the gateway's (HTTP publish), so that an
    event published either way is kept and confirmed alike, from the same variables.
    """

    history_maxlen: int = Field(
        default=10_000, ge=1, description="Entries kept per channel (approximate trim)."
    )
    history_max_age_seconds: float = Field(
        default=0, ge=0, description="Also drop entries older than this (0: off)."
    )
    history_exact_trim: bool = Field(
        default=False, description="Trim to exactly SSE_HISTORY_MAXLEN (slower)."
    )
    publish_replicas: str = Field(
        default="auto",
        description="Replicas that must hold an event before it is acknowledged: a number, "
        "or `auto` (1 where the channel's shard has a replica online, else 0).",
    )
    publish_wait_timeout_ms: int = Field(
        default=WAIT_TIMEOUT_MS,
        ge=1,
        description="How long one attempt waits for those replicas before it is retried.",
    )

    @field_validator("publish_replicas")
    @classmethod
    def _replicas(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "auto" and not (value.isdigit() and value.isascii()):
            raise ValueError(f"{value!r} is neither 'auto' nor a whole number >= 0 of replicas")
        return value

    def retention(self) -> Retention:
        return Retention(
            maxlen=self.history_maxlen,
            exact_trim=self.history_exact_trim,
            max_age_ms=int(self.history_max_age_seconds * 1000),
        )

    def replicas(self) -> int | None:
        """``SSE_PUBLISH_REPLICAS`` as a number, or None for auto."""
        return None if self.publish_replicas == "auto" else int(self.publish_replicas)

    def publisher(
        self,
        redis_url: str,
        *,
        prefix: str,
        mode: str | None = None,
        max_attempts: int | None = None,
    ) -> Publisher:
        """A ``Publisher`` with these settings and its own Redis client (``aclose`` it)."""
        return Publisher.from_url(
            redis_url,
            prefix=prefix,
            retention=self.retention(),
            mode=mode,
            replicas=self.replicas(),
            wait_timeout_ms=self.publish_wait_timeout_ms,
            max_attempts=max_attempts,
        )


class ProducerSettings(BaseSettings, PublishSettings):
    model_config = SettingsConfigDict(env_prefix="SSE_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "SSE_REDIS_URL"),
    )
    redis_mode: str = "auto"
    """``auto`` (detect), ``standalone`` or ``cluster``; checked against the server."""
    key_prefix: str = "sse"
    event_modules: EventModules = ()
    """Modules whose ``BaseEvent`` subclasses are imported at start (``SSE_EVENT_MODULES``)."""
    log_format: Literal["text", "json"] = "text"

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value
