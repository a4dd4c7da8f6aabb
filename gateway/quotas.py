"""Per-key limits: requests, audio seconds and picture frames per minute, and sessions open at once.

Counted in Redis, so every gateway replica enforces the same budget: a counter per key, kind and
minute (a fixed window that expires by itself), and a sorted set of the key's open sessions (an
entry a crashed gateway left behind ages out after `session_ttl_s`). A limit of 0 means none.
Going over raises `RateLimited` (HTTP 429, or an `error` event on the websocket).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

from shared.config import Settings
from shared.errors import RateLimited
from shared.keys import Keys

Budget = Literal["requests", "audio_seconds", "frames"]

# KEYS: counter. ARGV: amount, limit. Adds the amount unless that would pass the limit.
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {0, tostring(used)} end
used = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], 120)
return {1, tostring(used)}
"""


@dataclass(frozen=True)
class Remaining:
    """What is left of a budget this minute, as `rate_limits.updated` reports it."""

    name: Budget
    limit: float
    remaining: float
    reset_seconds: float


class Quotas:
    def __init__(self, client: aioredis.Redis, keys: Keys, settings: Settings) -> None:
        self._r = client
        self._keys = keys
        self._limits: dict[Budget, float] = {
            "requests": settings.limit_requests_per_minute,
            "audio_seconds": settings.limit_audio_seconds_per_minute,
            "frames": settings.limit_frames_per_minute,
        }
        self._max_sessions = settings.limit_sessions_per_key
        self._session_ttl_s = settings.session_ttl_s
        self._take = client.register_script(_TAKE)

    async def take(self, owner: str, budget: Budget, amount: float = 1.0) -> Remaining | None:
        """Spend from a budget; None when it has no limit. Raises RateLimited when it is spent."""
        limit = self._limits[budget]
        if not limit:
            return None
        now = time.time()
        minute = int(now // 60)
        reset = 60 - now % 60
        key = self._keys.quota(owner, budget, minute)
        ok, used = await self._take(keys=[key], args=[amount, limit])
        if not int(ok):
            raise RateLimited(
                f"Rate limit reached for {budget.replace('_', ' ')}: {limit:g} per minute. Try again in {reset:.0f} s.",
                retry_after_s=reset,
            )
        return Remaining(budget, limit, max(0.0, limit - float(used)), round(reset, 1))

    async def open_session(self, owner: str, session_id: str) -> None:
        if not self._max_sessions:
            return
        key, now = self._keys.quota_sessions(owner), time.time()
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now - self._session_ttl_s)
            pipe.zadd(key, {session_id: now})
            pipe.zcard(key)
            pipe.expire(key, self._session_ttl_s)
            _, _, open_now, _ = await pipe.execute()
        if open_now > self._max_sessions:
            await self._r.zrem(key, session_id)
            raise RateLimited(f"At most {self._max_sessions} sessions may be open at once per API key.")

    async def close_session(self, owner: str, session_id: str) -> None:
        if self._max_sessions:
            await self._r.zrem(self._keys.quota_sessions(owner), session_id)
