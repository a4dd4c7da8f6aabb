"""Batches in Redis: the record, each line's result and attempt, and the lease of the gateway driving it.

A batch outlives any one gateway: whichever gateway holds its driver lease runs it, and another
takes over when that lease lapses. Nothing is lost or written twice because:
- a line's result is written once (`HSETNX`), and the counts move only when it is;
- status changes are compare-and-set scripts, so a cancel and the driver never both win;
- a line's attempt number names its response in Redis, so a new driver follows work in flight
  instead of starting it again.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis.asyncio as aioredis

from shared.errors import NotFound
from shared.keys import Keys
from shared.messages import BATCH_ENDS, BatchObject, BatchRequestCounts, BatchStatus
from shared.redis_text import text as _text

_COUNTS = ("total", "completed", "failed")

# KEYS: record. ARGV: new status, JSON list of statuses it may come from, then field/value pairs.
_TRANSITION = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 0 end
local allowed = false
for _, s in ipairs(cjson.decode(ARGV[2])) do
  if cjson.encode(s) == st then allowed = true end
end
if not allowed then return 0 end
redis.call('HSET', KEYS[1], 'status', cjson.encode(ARGV[1]))
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""

# KEYS: record, results. ARGV: line index, result line, count field ('completed' or 'failed').
_RECORD = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""

# KEYS: lease. ARGV: owner, ttl_ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


# The longest completion window a batch may ask for.
MAX_WINDOW_S = 7 * 24 * 3600


class BatchStore:
    def __init__(self, client: aioredis.Redis, keys: Keys, *, ttl_s: int) -> None:
        self._r = client
        self._keys = keys
        self._ttl_s = ttl_s
        self._transition = client.register_script(_TRANSITION)
        self._record = client.register_script(_RECORD)
        self._renew = client.register_script(_RENEW)

    # --- the record -----------------------------------------------------------------------------

    async def create(self, batch: BatchObject, owner: str) -> None:
        """Store a new batch; it stays active until it ends, and its keys outlive its window by `ttl_s`."""
        k = self._keys
        window = max(0, (batch.expires_at or batch.created_at) - batch.created_at)
        fields = {**_encode(batch), "owner": owner}
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(k.batch(batch.id), mapping=cast(Any, fields))
            pipe.expire(k.batch(batch.id), window + self._ttl_s)
            pipe.zadd(k.batches_index(), {batch.id: time.time()})
            # Entries older than the longest a batch's keys live name batches that are gone; listing
            # prunes them too, but a service whose batches are never listed would grow this for ever.
            pipe.zremrangebyscore(k.batches_index(), "-inf", time.time() - MAX_WINDOW_S - self._ttl_s)
            pipe.sadd(k.batches_active(), batch.id)
            await pipe.execute()

    async def get(self, batch_id: str, owner: str | None = None) -> BatchObject:
        """A batch, if `owner` (None: the service itself) may see it."""
        return (await self._get(batch_id, owner))[0]

    async def owner(self, batch_id: str) -> str:
        return (await self._get(batch_id, None))[1]

    async def _get(self, batch_id: str, owner: str | None) -> tuple[BatchObject, str]:
        raw = await self._r.hgetall(self._keys.batch(batch_id))
        fields = {_text(key): _text(value) for key, value in raw.items()}
        found = fields.pop("owner", "")
        if not fields or (owner is not None and found != owner):
            raise NotFound(f"No such batch: '{batch_id}'.", param="batch_id")
        return _decode(fields), found

    async def page(self, *, owner: str, limit: int, after: str | None) -> list[BatchObject]:
        """Newest first, after the batch `after`; entries whose batch expired are pruned."""
        index = self._keys.batches_index()
        ids = [_text(i) for i in await self._r.zrange(index, 0, -1, desc=True)]
        if after is not None:
            ids = ids[ids.index(after) + 1 :] if after in ids else []
        out: list[BatchObject] = []
        for batch_id in ids:
            try:
                batch, found = await self._get(batch_id, None)
            except NotFound:
                await self._r.zrem(index, batch_id)
                continue
            if found != owner:
                continue
            out.append(batch)
            if len(out) >= limit:
                break
        return out

    async def transition(self, batch_id: str, to: BatchStatus, sources: tuple[BatchStatus, ...], **fields: Any) -> bool:
        """Set the status to `to` if it is one of `sources`, with the given fields; False otherwise."""
        args: list[Any] = [to, json.dumps(list(sources))]
        for name, value in fields.items():
            args += [name, json.dumps(value)]
        changed = bool(await self._transition(keys=[self._keys.batch(batch_id)], args=args))
        if changed and to in BATCH_ENDS:
            await self._ended(batch_id)
        return changed

    async def set_total(self, batch_id: str, total: int) -> None:
        await self._r.hset(self._keys.batch(batch_id), "total", total)

    async def _ended(self, batch_id: str) -> None:
        k = self._keys
        async with self._r.pipeline(transaction=False) as pipe:
            for key in (k.batch(batch_id), k.batch_results(batch_id), k.batch_attempts(batch_id)):
                pipe.expire(key, self._ttl_s)
            pipe.srem(k.batches_active(), batch_id)
            pipe.delete(k.batch_driver(batch_id))
            await pipe.execute()

    # --- lines ----------------------------------------------------------------------------------

    async def record(self, batch_id: str, index: int, line: str, *, ok: bool) -> bool:
        """Write a line's result once; False when it was already written (by this or another driver)."""
        k = self._keys
        keys = [k.batch(batch_id), k.batch_results(batch_id)]
        return bool(await self._record(keys=keys, args=[index, line, "completed" if ok else "failed"]))

    async def results(self, batch_id: str) -> dict[int, str]:
        raw = await self._r.hgetall(self._keys.batch_results(batch_id))
        return {int(_text(key)): _text(value) for key, value in raw.items()}

    async def done_lines(self, batch_id: str) -> set[int]:
        return {int(_text(key)) for key in await self._r.hkeys(self._keys.batch_results(batch_id))}

    async def attempt(self, batch_id: str, index: int) -> int | None:
        """The attempt a driver last started for a line, or None if none has."""
        raw = await self._r.hget(self._keys.batch_attempts(batch_id), str(index))
        return None if raw is None else int(_text(raw))

    async def next_attempt(self, batch_id: str, index: int) -> int:
        k = self._keys
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hincrby(k.batch_attempts(batch_id), str(index), 1)
            pipe.expire(k.batch_attempts(batch_id), await self._ttl(batch_id))
            attempt, _ = await pipe.execute()
        return int(attempt)

    async def _ttl(self, batch_id: str) -> int:
        ttl = int(await self._r.ttl(self._keys.batch(batch_id)))
        return ttl if ttl > 0 else self._ttl_s

    # --- who drives it --------------------------------------------------------------------------

    async def active(self) -> list[str]:
        return sorted(_text(i) for i in await self._r.smembers(self._keys.batches_active()))

    async def forget_active(self, batch_id: str) -> None:
        await self._r.srem(self._keys.batches_active(), batch_id)

    async def claim(self, batch_id: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self._r.set(self._keys.batch_driver(batch_id), owner, nx=True, px=ttl_ms))

    async def renew(self, batch_id: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self._renew(keys=[self._keys.batch_driver(batch_id)], args=[owner, ttl_ms]))

    async def release(self, batch_id: str, owner: str) -> None:
        key = self._keys.batch_driver(batch_id)
        if _text(await self._r.get(key)) == owner:
            await self._r.delete(key)


def _encode(batch: BatchObject) -> dict[str, str | int]:
    data = batch.model_dump(mode="json")
    counts = data.pop("request_counts")
    return {**{name: json.dumps(value) for name, value in data.items()}, **counts}


def _decode(fields: dict[str, str]) -> BatchObject:
    counts = BatchRequestCounts(**{name: int(fields.pop(name, "0")) for name in _COUNTS})
    data = {name: json.loads(value) for name, value in fields.items()}
    return BatchObject.model_validate({**data, "request_counts": counts})
