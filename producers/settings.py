"""Producer settings from the environment (``REDIS_URL``, ``SSE_*``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.publisher import WAIT_TIMEOUT_MS, Retention


class ProducerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SSE_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "SSE_REDIS_URL"),
    )
    redis_mode: str = "auto"
    """``auto`` (detect), ``standalone`` or ``cluster``; checked against the server."""
    key_prefix: str = "sse"
    history_maxlen: int = Field(default=10_000, ge=1)
    history_max_age_seconds: float = Field(default=0, ge=0)
    history_exact_trim: bool = False
    publish_replicas: str = "auto"
    """Replicas that must hold an event before it is acknowledged: a number, or ``auto``."""
    publish_wait_timeout_ms: int = Field(default=WAIT_TIMEOUT_MS, ge=1)
    log_format: Literal["text", "json"] = "text"

    @field_validator("publish_replicas")
    @classmethod
    def _replicas(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "auto" and not (value.isdigit() and value.isascii()):
            raise ValueError(f"{value!r} is neither 'auto' nor a whole number >= 0 of replicas")
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def retention(self) -> Retention:
        return Retention(
            maxlen=self.history_maxlen,
            exact_trim=self.history_exact_trim,
            max_age_ms=int(self.history_max_age_seconds * 1000),
        )

    def replicas(self) -> int | None:
        """``SSE_PUBLISH_REPLICAS`` as a number, or None for auto."""
        return None if self.publish_replicas == "auto" else int(self.publish_replicas)
