"""A response's life in Redis, changed only by atomic scripts.

Keys (see `Keys`): a state hash (`status`, `attempt`, `owner`, `queued_at`), an event stream that
ends with exactly one `final` entry, a cancel flag and the owning worker's lease.

    queued --claim--> running --finish--> completed | cancelled | incomplete | failed
       ^                 |
       +----requeue------+   (lease expired: the worker died; the gateway sends the task again)

Every transition is a Lua script, so a worker, a redelivered copy of its task and the gateway
never both act on one response: a task that finds the response final does nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import redis
import redis.asyncio as aioredis

from shared import streams
from shared.keys import Keys
from shared.messages import FinalEvent, ResponseFinal, StreamEvent, TokenDelta, stream_event_adapter
from shared.redis_text import text as _text

QUEUED: Final = "queued"
RUNNING: Final = "running"

ClaimResult = Literal["ok", "final", "busy", "missing", "exhausted"]
FinishMode = Literal["owner", "unclaimed"]

# KEYS: state, lease, events. ARGV: owner, lease_ms, max_attempts, exhausted_final_json, ttl_s, pid
_CLAIM = f"""
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st ~= 'queued' and st ~= 'running' then return 'final' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'busy' end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
if attempt > tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'status', 'failed')
  redis.call('XADD', KEYS[3], '*', '{streams.FIELD}', ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  return 'exhausted'
end
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1], 'owner_pid', ARGV[6])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 'ok'
"""

# KEYS: lease. ARGV: owner, lease_ms
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Append to responses' streams: one (`append`) or many at once (a decoder's relay, once per engine
# call). KEYS: lease, events, cancel of
# each response. ARGV: lease_ms, ttl_s, then per response: owner, n, n entry_json. Per response:
# 0 when the lease is not the owner's; else its entries are added, its lease extended, and the
# reply is its cancel reason, or 1.
_RELAY = f"""
local out = {{}}
local a = 3
for i = 1, #KEYS, 3 do
  local owner, n = ARGV[a], tonumber(ARGV[a + 1])
  if redis.call('GET', KEYS[i]) ~= owner then
    out[#out + 1] = 0
  else
    for j = a + 2, a + 1 + n do redis.call('XADD', KEYS[i + 1], '*', '{streams.FIELD}', ARGV[j]) end
    if n > 0 then redis.call('EXPIRE', KEYS[i + 1], ARGV[2]) end
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[#out + 1] = redis.call('GET', KEYS[i + 2]) or 1
  end
  a = a + 2 + n
end
return out
"""

# KEYS: state, lease, events. ARGV: mode, owner, status, final_json, ttl_s
_FINISH = f"""
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'queued' and st ~= 'running' then return 0 end
if ARGV[1] == 'owner' and redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
if ARGV[1] == 'unclaimed' and (st ~= 'queued' or redis.call('EXISTS', KEYS[2]) == 1) then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3])
redis.call('XADD', KEYS[3], '*', '{streams.FIELD}', ARGV[4])
redis.call('DEL', KEYS[2])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return 1
"""

# KEYS: state, lease. A running response whose lease has expired goes back to the queue.
_REQUEUE = """
if redis.call('HGET', KEYS[1], 'status') == 'running' and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'queued_at', ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Update:
    """What a worker sends for one of its responses in `ResponseStore.relay`."""

    response_id: str
    owner: str
    events: Sequence[StreamEvent] = ()


@dataclass(frozen=True)
class Relayed:
    """What `ResponseStore.relay` found for one response."""

    held: bool  # the lease was the owner's: the events were added and the lease extended
    cancel_reason: str | None = None


def encode_event(event: StreamEvent) -> str:
    return event.model_dump_json()


def decode_event(raw: bytes | str) -> StreamEvent:
    return stream_event_adapter.validate_json(raw)


class _Store:
    def __init__(self, keys: Keys, ttl_s: int) -> None:
        self._keys = keys
        self._ttl_s = ttl_s

    def _finish_args(
        self, response_id: str, mode: FinishMode, owner: str, final: FinalEvent
    ) -> tuple[list[str], list[Any]]:
        k = self._keys
        keys = [k.response(response_id), k.response_lease(response_id), k.response_events(response_id)]
        return keys, [mode, owner, final.status, encode_event(final), self._ttl_s]


class ResponseStore(_Store):
    """The worker's side: claim a response, stream its tokens, finish it (synchronous redis-py)."""

    def __init__(self, client: redis.Redis, keys: Keys, *, lease_ms: int, ttl_s: int) -> None:
        super().__init__(keys, ttl_s)
        self._r = client
        self._lease_ms = lease_ms
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._relay = client.register_script(_RELAY)
        self._finish = client.register_script(_FINISH)

    def claim(self, response_id: str, owner: str, max_attempts: int) -> ClaimResult:
        k = self._keys
        exhausted = ResponseFinal(
            status="failed",
            error_code="server_error",
            error_message=f"The response failed {max_attempts} times on the decoder; giving up.",
        )
        result = self._claim(
            keys=[k.response(response_id), k.response_lease(response_id), k.response_events(response_id)],
            args=[owner, self._lease_ms, max_attempts, encode_event(exhausted), self._ttl_s, os.getpid()],
        )
        return cast(ClaimResult, _text(result))

    def renew(self, response_id: str, owner: str) -> bool:
        return bool(self._renew(keys=[self._keys.response_lease(response_id)], args=[owner, self._lease_ms]))

    def append(self, response_id: str, owner: str, deltas: Sequence[StreamEvent]) -> bool:
        """Add deltas to the stream (and extend the lease), only while this worker still holds the lease."""
        return self.relay([Update(response_id, owner, deltas)])[0].held

    def relay(self, updates: Sequence[Update]) -> list[Relayed]:
        """Append each response's events and extend its lease, only where the owner still holds it,
        and read its cancel flag: one round trip for all of a worker's running responses."""
        if not updates:
            return []
        k = self._keys
        keys: list[str] = []
        args: list[Any] = [self._lease_ms, self._ttl_s]
        for u in updates:
            rid = u.response_id
            keys += [k.response_lease(rid), k.response_events(rid), k.response_cancel(rid)]
            args += [u.owner, len(u.events), *(encode_event(e) for e in u.events)]
        replies: Any = self._relay(keys=keys, args=args)
        return [
            Relayed(held=False) if r == 0 else Relayed(held=True, cancel_reason=None if r == 1 else _text(r))
            for r in replies
        ]

    def finish(self, response_id: str, owner: str, final: FinalEvent) -> bool:
        keys, args = self._finish_args(response_id, "owner", owner, final)
        return bool(self._finish(keys=keys, args=args))

    def release(self, response_id: str, owner: str) -> None:
        """Give a running response up (worker shutting down) so that another worker continues it."""
        lease = self._keys.response_lease(response_id)
        if _text(self._r.get(lease)) == owner:
            self._r.delete(lease)

    def cancel_reason(self, response_id: str) -> str | None:
        """Why the response was cancelled (e.g. client_cancelled, turn_detected), or None."""
        value = self._r.get(self._keys.response_cancel(response_id))
        return None if value is None else _text(value)

    def events_so_far(self, response_id: str) -> list[StreamEvent]:
        """What earlier attempts already streamed; a new attempt continues after it."""
        return [decode_event(raw) for _, raw in streams.read_all(self._r, self._keys.response_events(response_id))]

    def generated_so_far(self, response_id: str) -> tuple[list[int], str]:
        """Token ids and text a previous attempt already streamed; a new attempt continues after them."""
        ids: list[int] = []
        text: list[str] = []
        for _, raw in streams.read_all(self._r, self._keys.response_events(response_id)):
            event = decode_event(raw)
            if isinstance(event, TokenDelta):
                ids.extend(event.token_ids)
                text.append(event.text)
        return ids, "".join(text)


class AsyncResponseStore(_Store):
    """The gateway's side: create a response, read its events, cancel it, notice a dead worker."""

    def __init__(self, client: aioredis.Redis, keys: Keys, *, ttl_s: int) -> None:
        super().__init__(keys, ttl_s)
        self._r = client
        self._finish = client.register_script(_FINISH)
        self._requeue = client.register_script(_REQUEUE)

    async def create(self, response_id: str, session_id: str) -> None:
        key = self._keys.response(response_id)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"status": QUEUED, "attempt": 0, "session_id": session_id, "queued_at": time.time()})
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def exists(self, response_id: str) -> bool:
        return bool(await self._r.exists(self._keys.response(response_id)))

    async def state(self, response_id: str) -> dict[str, str]:
        raw = await self._r.hgetall(self._keys.response(response_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    async def lease_alive(self, response_id: str) -> bool:
        return bool(await self._r.exists(self._keys.response_lease(response_id)))

    async def read(self, response_id: str, after: str, block_ms: int) -> list[tuple[str, StreamEvent]]:
        entries = await streams.read(
            self._r, self._keys.response_events(response_id), after, block_ms=block_ms, count=256
        )
        return [(entry_id, decode_event(raw)) for entry_id, raw in entries]

    async def request_cancel(self, response_id: str, reason: str) -> None:
        await self._r.set(self._keys.response_cancel(response_id), reason, nx=True, ex=self._ttl_s)

    async def cancel_requested(self, response_id: str) -> bool:
        return bool(await self._r.exists(self._keys.response_cancel(response_id)))

    async def finish_unclaimed(self, response_id: str, final: FinalEvent) -> bool:
        """End a response no worker has started (cancelled while queued, or no decoder came)."""
        keys, args = self._finish_args(response_id, "unclaimed", "", final)
        return bool(await self._finish(keys=keys, args=args))

    async def forget(self, response_ids: Sequence[str]) -> None:
        """Delete the keys of responses that have ended and that nobody will read again.

        Only for ended responses: a running one's worker still reads the cancel flag. A task copy
        still queued finds its response missing and does nothing.
        """
        k = self._keys
        keys = [
            key
            for rid in response_ids
            for key in (k.response(rid), k.response_events(rid), k.response_cancel(rid), k.response_lease(rid))
        ]
        if keys:
            await self._r.delete(*keys)

    async def requeue_if_abandoned(self, response_id: str) -> bool:
        k = self._keys
        return bool(
            await self._requeue(keys=[k.response(response_id), k.response_lease(response_id)], args=[time.time()])
        )
