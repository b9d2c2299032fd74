"""Publishing through a gateway's HTTP API, as any HTTP client would."""

from __future__ import annotations

from typing import Any

import httpx

PUBLISH_ON = {"SSE_HTTP_PUBLISH": "true"}


def publish_url(base_url: str, channel: str) -> str:
    return f"{base_url}/channels/{channel}/events"


def post_event(
    base_url: str,
    channel: str,
    event: str,
    data: Any,
    *,
    key: str | None = None,
    token: str | None = None,
) -> httpx.Response:
    """``POST /channels/{channel}/events`` with a JSON body (and a key, a bearer token)."""
    headers = {}
    if key is not None:
        headers["Idempotency-Key"] = key
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(
        publish_url(base_url, channel),
        json={"event": event, "data": data},
        headers=headers,
        timeout=20,
    )


def published_id(response: httpx.Response) -> str:
    """The entry id of a 201; fails with the body for anything else."""
    assert response.status_code == 201, f"{response.status_code}: {response.text}"
    entry_id: str = response.json()["id"]
    return entry_id
