"""What the gateway reads of worker presence (`workers.presence` writes it): the live workers of a kind."""

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
