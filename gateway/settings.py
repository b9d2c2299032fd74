"""Gateway settings, read once from the environment (``REDIS_URL``, ``SSE_*``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """Every knob of a gateway process; the README's configuration table lists them."""

    model_config = SettingsConfigDict(env_prefix="SSE_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "SSE_REDIS_URL"),
        description="Redis server for history and live flow.",
    )
    key_prefix: str = Field(default="sse", description="Prefix of every Redis key.")
    ping_interval: float = Field(
        default=15.0, gt=0, description="Seconds between keep-alive comments on idle streams."
    )
    retry_ms: int = Field(
        default=2000, ge=0, description="`retry:` hint sent to clients (milliseconds)."
    )
    shutdown_retry_ms: int = Field(
        default=250, ge=0, description="`retry:` hint sent to streams closed by a shutdown."
    )
    max_channels: int = Field(
        default=16, ge=1, description="Most channels one stream may subscribe to."
    )
    max_cursor_length: int = Field(
        default=4096, ge=16, description="Longest Last-Event-ID accepted (characters)."
    )
    max_streams: int = Field(
        default=50_000, ge=1, description="Most open streams per process (503 beyond)."
    )
    client_buffer_events: int = Field(
        default=5_000, ge=1, description="Events buffered per client and channel before it is cut."
    )
    client_buffer_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Payload bytes buffered per client and channel before it is cut.",
    )
    flush_interval_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="Window in which live events are gathered into one batch (0: next loop turn).",
    )
    history_page_size: int = Field(
        default=500, ge=1, le=100_000, description="Entries per history read."
    )
    history_cache_pages: int = Field(
        default=256, ge=0, description="Full history pages kept for clients resuming alike."
    )
    send_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a write may block before the client is cut."
    )
    shutdown_grace_period: float = Field(
        default=5.0, ge=0, description="Seconds streams get to close on SIGTERM."
    )
    redis_backoff_initial: float = Field(default=0.05, gt=0)
    redis_backoff_max: float = Field(default=2.0, gt=0)
