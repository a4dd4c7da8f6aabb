"""A session's settings and conversation, kept in Redis so that no process holds them alone.

The conversation is a hash (item id -> item JSON) plus a list giving the order. Every write
refreshes the TTL of the session's keys, so an abandoned session disappears by itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis

from shared.errors import InvalidRequest
from shared.keys import Keys
from shared.messages import FunctionCallItem, InputAudio, InputImage, Item, MessageItem, Session, item_adapter
from shared.redis_text import text

# KEYS: items, order. ARGV: item_id, item_json, previous_id ('' = append, '^' = insert first), max_items, ttl_s
# Returns {'ok' or 'duplicate', id of the item before it ('' if first)} or {'unknown_previous'}.
# Both keys get the TTL here: a worker may add a turn after its session closed and dropped them.
_ADD_ITEM = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  local pos = redis.call('LPOS', KEYS[2], ARGV[1])
  if pos and pos > 0 then return {'duplicate', redis.call('LINDEX', KEYS[2], pos - 1)} end
  return {'duplicate', ''}
end
local prev = ARGV[3]
if prev == '' then
  local last = redis.call('LINDEX', KEYS[2], -1)
  redis.call('RPUSH', KEYS[2], ARGV[1])
  prev = last or ''
elseif prev == '^' then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  prev = ''
else
  if redis.call('LINSERT', KEYS[2], 'AFTER', prev, ARGV[1]) <= 0 then
    return {'unknown_previous'}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
-- Bounded conversation: the oldest items go first.
while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[4]) do
  local old = redis.call('LPOP', KEYS[2])
  redis.call('HDEL', KEYS[1], old)
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {'ok', prev}
"""


# KEYS: items. ARGV: item_id, content_index (0-based), part type, field, value, only_if_unset.
# Fills in what a worker found out about a part (a transcript, a description), or an empty one
# when the gateway gives the media up ('1': not over a result that just arrived); a deleted item
# stays deleted.
_SET_PART_FIELD = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local item = cjson.decode(raw)
local part = nil
if ARGV[2] == '-1' then  -- the item's first part of that type, wherever it is
  for _, p in ipairs(item['content']) do
    if p['type'] == ARGV[3] then part = p; break end
  end
else
  part = item['content'][tonumber(ARGV[2]) + 1]
end
if not part or part['type'] ~= ARGV[3] then return 0 end
if ARGV[6] == '1' and part[ARGV[4]] ~= nil and part[ARGV[4]] ~= cjson.null then return 0 end
part[ARGV[4]] = ARGV[5]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(item))
return 1
"""


class SessionStore:
    """The gateway's view of one session's state."""

    def __init__(self, client: aioredis.Redis, keys: Keys, *, ttl_s: int, max_items: int) -> None:
        self._r = client
        self._keys = keys
        self._ttl_s = ttl_s
        self._max_items = max_items
        self._add = client.register_script(_ADD_ITEM)
        self._set_field = client.register_script(_SET_PART_FIELD)

    async def save(self, session: Session) -> None:
        await self._r.set(self._keys.session(session.id), session.model_dump_json(), ex=self._ttl_s)

    async def forget(self, session_id: str) -> None:
        """Delete a session's state now (an HTTP request's conversation, once answered)."""
        await self.drop(session_id)

    async def add_item(self, session_id: str, item: Item, previous_item_id: str | None) -> str | None:
        """Insert an item (after `previous_item_id`, or at the end) and return the id before it."""
        items, order = self._keys.session_items(session_id), self._keys.session_order(session_id)
        status, *prev = await self._add(
            keys=[items, order],
            args=[item.id, item.model_dump_json(), previous_item_id or "", self._max_items, self._ttl_s],
        )
        if text(status) == "duplicate":
            raise InvalidRequest(f"Item {item.id} already exists.", param="item.id")
        if text(status) == "unknown_previous":
            raise InvalidRequest(
                f"Previous item {previous_item_id} does not exist.", code="item_not_found", param="previous_item_id"
            )
        await self.touch(session_id)
        return text(prev[0]) or None

    async def get_item(self, session_id: str, item_id: str) -> Item:
        raw = await self._r.hget(self._keys.session_items(session_id), item_id)
        if raw is None:
            raise InvalidRequest(f"Item {item_id} does not exist.", code="item_not_found", param="item_id")
        return item_adapter.validate_json(raw)

    async def replace_item(self, session_id: str, item: Item) -> None:
        """Rewrite an item in place; one that has meanwhile been deleted stays deleted."""
        key = self._keys.session_items(session_id)
        await self._r.eval(
            "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end",
            1,
            key,
            item.id,
            item.model_dump_json(),
        )

    async def fill_in_transcript(self, session_id: str, item_id: str, transcript: str) -> bool:
        """Set the transcript of the item's speech unless it has one: False when it had (or is gone)."""
        keys = [self._keys.session_items(session_id)]
        return bool(await self._set_field(keys=keys, args=[item_id, -1, "input_audio", "transcript", transcript, 1]))

    async def fill_in_description(self, session_id: str, item_id: str, content_index: int, description: str) -> bool:
        keys = [self._keys.session_items(session_id)]
        args: list[str | int] = [item_id, content_index, "input_image", "description", description, 1]
        return bool(await self._set_field(keys=keys, args=args))

    async def has_call(self, session_id: str, call_id: str) -> bool:
        """Whether a `function_call` item with this call id is in the conversation (one read of all items)."""
        for raw in await self._r.hvals(self._keys.session_items(session_id)):
            item = item_adapter.validate_json(raw)
            if isinstance(item, FunctionCallItem) and item.call_id == call_id:
                return True
        return False

    async def delete_item(self, session_id: str, item_id: str) -> None:
        removed = await self._r.hdel(self._keys.session_items(session_id), item_id)
        if not removed:
            raise InvalidRequest(f"Item {item_id} does not exist.", code="item_not_found", param="item_id")
        await self._r.lrem(self._keys.session_order(session_id), 0, item_id)

    async def item_ids(self, session_id: str) -> list[str]:
        raw = await self._r.lrange(self._keys.session_order(session_id), 0, -1)
        return [text(r) for r in raw]

    async def touch(self, session_id: str) -> None:
        k = self._keys
        async with self._r.pipeline(transaction=False) as pipe:
            for key in (k.session(session_id), k.session_items(session_id), k.session_order(session_id)):
                pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def drop(self, session_id: str) -> None:
        """Delete every key the session owns: its settings, conversation, audio and camera state, and
        what workers stored for its items (speech, encoder states, embeddings: the bulk of its bytes,
        which would otherwise outlive it by `session_ttl_s`)."""
        k = self._keys
        keys = k.session_scratch(session_id)
        for raw in await self._r.hvals(k.session_items(session_id)):
            item = item_adapter.validate_json(raw)
            if not isinstance(item, MessageItem):
                continue  # tool calls and their outputs keep no media
            images = [i for i, part in enumerate(item.content) if isinstance(part, InputImage)]
            audio = any(isinstance(part, InputAudio) for part in item.content)
            keys += k.item_media(session_id, item.id, audio, images)
        await self._r.delete(*keys)


class SessionWriter:
    """What workers change in a conversation: items they commit and transcripts they finish."""

    def __init__(self, client: redis.Redis, keys: Keys, *, ttl_s: int, max_items: int) -> None:
        self._keys = keys
        self._ttl_s = ttl_s
        self._max_items = max_items
        self._add = client.register_script(_ADD_ITEM)
        self._set_field = client.register_script(_SET_PART_FIELD)
        self._client = client

    def add_item(self, session_id: str, item: MessageItem) -> str | None:
        """Append an item and return the id of the one before it; adding the same item id again (a
        redelivered task) changes nothing and returns the same."""
        keys = [self._keys.session_items(session_id), self._keys.session_order(session_id)]
        _, prev = self._add(keys=keys, args=[item.id, item.model_dump_json(), "", self._max_items, self._ttl_s])
        return text(prev) or None

    def set_transcript(self, session_id: str, item_id: str, transcript: str, content_index: int = -1) -> bool:
        """Fill in the transcript of the item's speech (a message holds at most one audio part)."""
        keys = [self._keys.session_items(session_id)]
        args: list[str | int] = [item_id, content_index, "input_audio", "transcript", transcript, 0]
        return bool(self._set_field(keys=keys, args=args))

    def set_description(self, session_id: str, item_id: str, content_index: int, description: str) -> bool:
        keys = [self._keys.session_items(session_id)]
        return bool(
            self._set_field(keys=keys, args=[item_id, content_index, "input_image", "description", description, 0])
        )

    def delete_item(self, session_id: str, item_id: str) -> bool:
        removed = self._client.hdel(self._keys.session_items(session_id), item_id)
        self._client.lrem(self._keys.session_order(session_id), 0, item_id)
        return bool(removed)

    def get_message(self, session_id: str, item_id: str) -> MessageItem | None:
        """The item if it is a message (only messages hold speech and pictures); None if gone or not."""
        raw: Any = self._client.hget(self._keys.session_items(session_id), item_id)
        item = None if raw is None else item_adapter.validate_json(raw)
        return item if isinstance(item, MessageItem) else None


def load_items(client: redis.Redis, keys: Keys, session_id: str, item_ids: Sequence[str]) -> list[Item]:
    """The worker's read of a conversation: the listed items that still exist, in order."""
    if not item_ids:
        return []
    raw = client.hmget(keys.session_items(session_id), list(item_ids))
    return [item_adapter.validate_json(r) for r in raw if r is not None]
