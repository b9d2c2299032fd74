"""The seed-style baseline: SSE from Redis the way the blog article's reader would write it.

It follows "基于FastAPI构建 Server-Sent Events API": an ``EventSourceResponse``
over an async generator yielding one ``ServerSentEvent`` per event, with typed
pydantic payloads, and adds the obvious Redis part: every client opens its
own pub/sub subscription and relays each message it gets. Nothing here is
tuned; that is the point of the baseline.

    REDIS_URL=redis://127.0.0.1:6379/0 uvicorn bench.baselines.seed_app:app
    curl -N 'http://127.0.0.1:8000/sse?channel=echo'
"""

import os
from collections.abc import AsyncIterator
from datetime import datetime

import redis.asyncio as redis
from fastapi import FastAPI, Request
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

app = FastAPI()
# Each pub/sub holds a pool connection for its whole life; redis-py's default pool stops at 100.
client = redis.Redis.from_url(
    os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), max_connections=100_000
)


class EchoPayload(BaseModel):
    message: str
    created_at: datetime


async def echo_stream(request: Request, channel: str) -> AsyncIterator[ServerSentEvent]:
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    try:
        t = 0
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            payload = EchoPayload.model_validate_json(message["data"])
            yield ServerSentEvent(event="echo", id=str(t), data=payload.model_dump_json())
            t += 1
    finally:
        await pubsub.unsubscribe(channel)
        await pubsub.aclose()  # type: ignore[no-untyped-call]


@app.get("/sse")
async def sse(request: Request, channel: str = "echo") -> EventSourceResponse:
    return EventSourceResponse(echo_stream(request, channel))
