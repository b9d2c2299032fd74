"""Gateway settings, read once from the environment (``REDIS_URL``, ``SSE_*``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contract.event_modules import EventModules
from gateway.auth import MIN_HS256_SECRET_BYTES, load_rs256_public_key
from gateway.resume.cursor import longest_cursor
from producers.settings import PublishSettings

# An origin as browsers send it: scheme://host[:port], no path.
_ORIGIN_RE = re.compile(r"https?://[^/\s?#]+")


class GatewaySettings(BaseSettings, PublishSettings):
    """Every knob of a gateway process; the README's configuration table lists them.

    HTTP publish trims and confirms like the producers: ``PublishSettings`` holds the
    variables both read (``SSE_HISTORY_*``, ``SSE_PUBLISH_REPLICAS``, ...).
    """

    model_config = SettingsConfigDict(env_prefix="SSE_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "SSE_REDIS_URL"),
        description="Redis for history and live flow: one server, or any Redis Cluster node"
        " (comma-separated seed nodes also work).",
    )
    redis_mode: str = Field(
        default="auto",
        description="auto detects a Redis Cluster (cluster_enabled:1); standalone or cluster"
        " forces the mode, and a server that contradicts it stops the gateway at start.",
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
    max_streams_per_subject: int | None = Field(
        default=None,
        ge=1,
        description="Most open streams per token subject (`sub`) and process (429 beyond); "
        "unset: no limit.",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request head (request line and headers, bytes); larger: 431. "
        "Under --http h11, h11's limit on an incomplete head.",
    )
    header_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds from a connection's start (or its last response) to a complete "
        "request head; later: 408 and closed (fast path).",
    )
    max_waiting_connections: int = Field(
        default=1024,
        ge=1,
        description="Most connections waiting for a request head at once, the oldest dropped "
        "for a new one; at most half the process's descriptor limit (fast path).",
    )
    channel_pattern: re.Pattern[str] | None = Field(
        default=None,
        description="Regular expression every subscribed channel name must match in full "
        "(on top of the fixed alphabet); unset: any valid name.",
    )
    auth_hs256_secret: SecretStr | None = Field(
        default=None,
        description="HS256 key for subscriber JWTs (32+ bytes); setting a key turns auth on.",
    )
    auth_rs256_public_key: str | None = Field(
        default=None,
        description="RS256 public key for subscriber JWTs: PEM text or a path to a PEM file.",
    )
    auth_jwks_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="JWKS URL whose RS256/ES256 keys verify subscriber JWTs (by their `kid`, "
        "then required); setting it turns auth on.",
    )
    auth_jwks_cooldown: float = Field(
        default=30.0,
        ge=0,
        description="Least seconds between two fetches of the JWKS for tokens naming an "
        "unknown `kid`.",
    )
    auth_max_stream_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Longest a stream opened with a token stays open, even if the token's "
        "`exp` is later (it ends with a `token_expired` reconnect event); unset: until `exp`.",
    )
    auth_audience: str | None = Field(default=None, description="Required JWT `aud`.")
    auth_issuer: str | None = Field(default=None, description="Required JWT `iss`.")
    auth_cookie: str = Field(
        default="sse_token",
        pattern=r"^[A-Za-z0-9_\-.]{1,64}$",
        description="Cookie that may carry the JWT.",
    )
    auth_channels_claim: str = Field(
        default="channels", min_length=1, description="JWT claim listing the readable channels."
    )
    auth_publish_claim: str = Field(
        default="publish",
        min_length=1,
        description="JWT claim listing the channels a token may publish to (HTTP publish).",
    )
    event_modules: EventModules = Field(
        default=(),
        description="Modules defining user event types (BaseEvent subclasses), imported at "
        "start, comma-separated: `myapp.events,other.events`.",
    )
    http_publish: bool = Field(
        default=False,
        description="Serve `POST /channels/{channel}/events`: publish over HTTP (with auth on, "
        "tokens need a `publish` claim).",
    )
    publish_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=256,
        le=16 * 1024 * 1024,
        description="Largest request body HTTP publish reads (413 beyond).",
    )
    publish_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds an HTTP publish may take to receive its body (408 beyond), and "
        "again for Redis (and replicas) to take the event (503 beyond: repeat it with the "
        "same Idempotency-Key to publish it once).",
    )
    publish_idempotency_seconds: float = Field(
        default=60.0,
        ge=1,
        le=86_400,
        description="How long an Idempotency-Key is honoured: a publish with a key looks back "
        "this far in its channel for an entry with that key (the look-back costs Redis time "
        "in proportion to the entries it covers).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to read streams cross-origin (comma-separated or a JSON "
        "list; `*` for any); empty: CORS off.",
    )
    cors_allow_credentials: bool = Field(
        default=False, description="Let cross-origin pages send cookies (for cookie tokens)."
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
        default=10.0,
        ge=0,
        le=1000,
        description=(
            "Least time between two fan-out flushes: an event after a quiet spell leaves at "
            "once, events arriving faster wait up to this long and leave together, one write "
            "per client (0: every loop turn)."
        ),
    )
    history_page_size: int = Field(
        default=500, ge=1, le=100_000, description="Entries per history read."
    )
    history_cache_pages: int = Field(
        default=256, ge=0, description="Full history pages kept for clients resuming alike."
    )
    history_cache_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=0,
        description="Bytes (payloads and their frames) the history page cache may hold.",
    )
    send_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a write may block before the client is cut."
    )
    send_buffer_bytes: int = Field(
        default=0,
        ge=0,
        description=(
            "Kernel send buffer of each stream's socket (SO_SNDBUF; Linux doubles it), fast "
            "path; 0: the kernel's autotuning. Autotuned buffers give a client that stops "
            "reading megabytes, which the gateway renders and copies before its writes "
            "wait; a fixed size bounds that, at the cost of less slack for clients that "
            "read in bursts."
        ),
    )
    tcp_nodelay: bool = Field(
        default=False,
        description=(
            "Send every write to a stream at once (TCP_NODELAY). Off, as nginx leaves it for "
            "streamed responses: writes made while the client's last segment is unacknowledged "
            "leave together with the ACK, fewer and larger segments under load."
        ),
    )
    shutdown_grace_period: float = Field(
        default=5.0, ge=0, description="Seconds streams get to close on SIGTERM."
    )
    redis_backoff_initial: float = Field(default=0.05, gt=0)
    redis_backoff_max: float = Field(default=2.0, gt=0)
    fast_path: bool = Field(
        default=True,
        description=(
            "Use uvicorn's and sse-starlette's insides for lighter, cheaper streams (the "
            "gateway falls back by itself when the installed versions are not the tested "
            "ones); false: the stock path, ASGI send/receive only."
        ),
    )
    metrics: bool = Field(
        default=True,
        description=(
            "Serve Prometheus metrics at GET /metrics and time flushes, deliveries and "
            "stream opens; false: /metrics answers 404 and only /stats's counts are kept."
        ),
    )
    metrics_channel_labels: int = Field(
        default=0,
        ge=0,
        le=10_000,
        description=(
            "Per-channel metrics (deliveries, events, streams) for the first N channels a "
            "process sees, the rest counted as `_other`; 0: none (channel names stay out "
            "of the metrics)."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines as text for people or as one JSON object per line.",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1",
        validation_alias=AliasChoices("FORWARDED_ALLOW_IPS", "SSE_FORWARDED_ALLOW_IPS"),
        description="Proxies whose X-Forwarded-For/-Proto are believed (uvicorn's rules).",
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("max_cursor_length")
    @classmethod
    def _fits_own_cursors(cls, value: int, info: ValidationInfo) -> int:
        # Else a client on many channels could not resume from a cursor this gateway gave it.
        channels = info.data.get("max_channels")
        if channels is not None and value < longest_cursor(channels):
            raise ValueError(
                f"{value} is too short for the cursor of SSE_MAX_CHANNELS={channels} channels; "
                f"set it to at least {longest_cursor(channels)}"
            )
        return value

    @field_validator("auth_hs256_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # RFC 7518 3.2: an HS256 key must be at least as long as the hash, 256 bits.
        if value is not None and len(value.get_secret_value().encode()) < MIN_HS256_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_HS256_SECRET_BYTES} bytes long; "
                "make one with: openssl rand -hex 32"
            )
        return value

    @field_validator("auth_rs256_public_key")
    @classmethod
    def _read_public_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "-----BEGIN" in value:
            # Environments often carry PEM with its newlines escaped.
            pem = value if "\n" in value else value.replace("\\n", "\n")
        else:
            try:
                pem = Path(value).read_text()
            except OSError as exc:
                raise ValueError(f"cannot read PEM file {value!r}: {exc.strerror}") from None
        load_rs256_public_key(pem)
        return pem

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and _ORIGIN_RE.fullmatch(origin) is None:
                raise ValueError(
                    f"{origin!r} is not an origin: use scheme://host[:port] with no path or "
                    "trailing slash, like https://app.example.com"
                )
        return value

    @field_validator("cors_allow_credentials")
    @classmethod
    def _no_credentials_for_everyone(cls, value: bool, info: ValidationInfo) -> bool:
        if value and "*" in info.data.get("cors_origins", []):
            raise ValueError(
                "with SSE_CORS_ORIGINS='*' every site could read streams with its visitors' "
                "cookies; list the allowed origins instead"
            )
        return value
