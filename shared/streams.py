"""The one way messages go onto and come off the Redis Streams that carry events.

Two kinds of stream carry events: a session's (`Keys.session_events`: transcripts, picture tags,
media failures, from the media workers and the gateway's media watch) and a response's (`Keys.response_events`:
tokens and the final event, written by the Lua scripts of `shared/response_state.py`). Each entry
holds one JSON message under `FIELD`; a session's stream keeps about `MAXLEN` entries and the
session's TTL. Workers publish with a sync client; the gateway reads with an async one.
"""

from __future__ import annotations

from typing import Any, Final

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel

from shared.redis_text import text

FIELD: Final = "m"
MAXLEN: Final = 2000

Entry = tuple[str, bytes | str]  # (entry id, the JSON message)


def message_of(fields: Any) -> bytes | str:
    """The JSON message of one stream entry's fields (keys as bytes or text)."""
    raw: bytes | str | None = fields.get(FIELD) or fields.get(FIELD.encode())
    return raw or b"{}"


def publish(client: redis.Redis, stream: str, message: BaseModel, *, ttl_s: int) -> None:
    """Append a message, keeping the stream short and alive for `ttl_s` (a closed session's stream
    was deleted: this makes it anew, so it must expire again)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.xadd(stream, {FIELD: message.model_dump_json()}, maxlen=MAXLEN, approximate=True)
        pipe.expire(stream, ttl_s)
        pipe.execute()


async def publish_async(client: aioredis.Redis, stream: str, message: BaseModel, *, ttl_s: int) -> None:
    async with client.pipeline(transaction=False) as pipe:
        pipe.xadd(stream, {FIELD: message.model_dump_json()}, maxlen=MAXLEN, approximate=True)
        pipe.expire(stream, ttl_s)
        await pipe.execute()


def read_all(client: redis.Redis, stream: str) -> list[Entry]:
    """Every entry so far, oldest first."""
    entries: Any = client.xrange(stream)
    return [(text(entry_id), message_of(fields)) for entry_id, fields in entries]


def last_id(client: redis.Redis, stream: str) -> str:
    """The id of the newest entry ('0-0' for none): wait for what comes after it."""
    newest: Any = client.xrevrange(stream, count=1)
    return text(newest[0][0]) if newest else "0-0"


def wait(client: redis.Redis, stream: str, after: str, *, block_ms: int) -> str:
    """Sleep until an entry after `after` arrives (or `block_ms` pass); the id to wait after next."""
    reply: Any = client.xread({stream: after}, block=block_ms)
    return text(reply[0][1][-1][0]) if reply else after


async def read(client: aioredis.Redis, stream: str, after: str, *, block_ms: int, count: int) -> list[Entry]:
    """Entries after `after` ('0' for all), waiting up to `block_ms` for the first."""
    reply: Any = await client.xread({stream: after}, block=block_ms, count=count)
    return [(text(entry_id), message_of(fields)) for _, entries in reply for entry_id, fields in entries]
