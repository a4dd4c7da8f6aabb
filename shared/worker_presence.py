"""What the gateway reads of worker presence (`workers.presence` writes it): the live workers of a kind,
and why recent ones could not start or died."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from shared.keys import Keys


async def live_workers(client: aioredis.Redis, keys: Keys, kind: str) -> list[dict[str, Any]]:
    return await _records(client, keys.worker_pattern(kind))


async def slots(client: aioredis.Redis, keys: Keys, kind: str) -> int:
    """Tasks the live workers of a kind run at once, all together (0 when none is running)."""
    return sum(int(w.get("concurrency", 1)) for w in await live_workers(client, keys, kind))


async def recent_failures(client: aioredis.Redis, keys: Keys, kind: str) -> list[dict[str, Any]]:
    """Failure records of the last few minutes, newest first."""
    records = await _records(client, keys.worker_failure_pattern(kind))
    return sorted(records, key=lambda r: -float(r.get("at", 0)))


async def _records(client: aioredis.Redis, pattern: str) -> list[dict[str, Any]]:
    """The JSON records under the keys matching `pattern` (one that expired meanwhile is skipped)."""
    names = [key async for key in client.scan_iter(match=pattern)]
    values = await client.mget(names) if names else []
    return [json.loads(v) for v in values if v is not None]
