"""What the gateway reads of worker presence (`workers.presence` writes it): the live workers of a kind,
and why recent ones could not start or died."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from shared.keys import Keys


async def live_workers(client: aioredis.Redis, keys: Keys, kind: str) -> list[dict[str, Any]]:
    names = [key async for key in client.scan_iter(match=keys.worker_pattern(kind))]
    values = await client.mget(names) if names else []
    return [json.loads(v) for v in values if v is not None]


async def slots(client: aioredis.Redis, keys: Keys, kind: str) -> int:
    """Tasks the live workers of a kind run at once, all together (0 when none is running)."""
    return sum(int(w.get("concurrency", 1)) for w in await live_workers(client, keys, kind))


async def recent_failures(client: aioredis.Redis, keys: Keys, kind: str) -> list[dict[str, Any]]:
    """Failure records of the last few minutes, newest first."""
    names = [key async for key in client.scan_iter(match=keys.worker_failure_pattern(kind))]
    values = await client.mget(names) if names else []
    return sorted((json.loads(v) for v in values if v is not None), key=lambda r: -float(r.get("at", 0)))
