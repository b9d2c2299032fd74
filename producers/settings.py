"""Producer settings from the environment (``REDIS_URL``, ``SSE_*``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from producers.publisher import Retention


class ProducerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SSE_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "SSE_REDIS_URL"),
    )
    key_prefix: str = "sse"
    history_maxlen: int = Field(default=10_000, ge=1)
    history_max_age_seconds: float = Field(default=0, ge=0)
    history_exact_trim: bool = False
    log_format: Literal["text", "json"] = "text"

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
