"""Pictures a VLM's projector encoded, kept by content for every image worker and session.

A VLM's vision tower is the costly part of a picture (llama-server encodes the same picture again
on every turn that sends it). Here its embeddings are kept in Redis under the picture's sha256 (and
the projector's), so the same picture sent again, in this session or another, costs no encoder pass.
Entries live `ttl_s` from their last use, and the cache holds at most `cap_bytes` of embeddings:
past that the least recently used go first. A script keeps the index and the sizes in step.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import redis

from shared.keys import Keys


@dataclass(frozen=True)
class Entry:
    header: bytes  # an ImageEmbedding header, as JSON
    data: bytes


class EncodedCache:
    def __init__(self, client: redis.Redis, keys: Keys, projector_sha256: str, *, ttl_s: int, cap_bytes: int) -> None:
        self._r = client
        self._keys = keys
        self._projector = projector_sha256[:16]
        self._ttl_s = ttl_s
        self._cap = cap_bytes
        self._put = client.register_script(_PUT)
        self._get = client.register_script(_GET)

    @staticmethod
    def digest(picture: bytes) -> str:
        return hashlib.sha256(picture).hexdigest()

    def get(self, digest: str) -> Entry | None:
        found: Any = self._get(keys=self._three(digest), args=[digest, time.time(), self._ttl_s])
        return Entry(bytes(found[0]), bytes(found[1])) if found else None

    def put(self, digest: str, entry: Entry) -> None:
        if len(entry.data) > self._cap:
            return
        prefix = self._keys.encoded_picture(self._projector, "")
        self._put(
            keys=self._three(digest),
            args=[digest, entry.header, entry.data, time.time(), self._ttl_s, self._cap, prefix],
        )

    def _three(self, digest: str) -> list[str]:
        k, p = self._keys, self._projector
        return [k.encoded_picture(p, digest), k.encoded_pictures_lru(p), k.encoded_pictures_sizes(p)]


# KEYS: entry, lru (digest -> last use), sizes (digest -> bytes). ARGV: digest, now, ttl.
_GET = """
local found = redis.call('HMGET', KEYS[1], 'header', 'data')
if not found[1] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return nil
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return found
"""

# KEYS as _GET. ARGV: digest, header, data, now, ttl, cap in bytes, entry key prefix.
# Drops entries unused for a TTL (their keys have expired), then the least recently used while the
# sizes add up to more than the cap.
_PUT = """
local digest, now, ttl, cap, prefix = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
redis.call('HSET', KEYS[1], 'header', ARGV[2], 'data', ARGV[3])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now, digest)
redis.call('HSET', KEYS[3], digest, string.len(ARGV[3]))
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl)) do
  redis.call('ZREM', KEYS[2], old)
  redis.call('HDEL', KEYS[3], old)
end
local total = 0
for _, size in ipairs(redis.call('HVALS', KEYS[3])) do total = total + tonumber(size) end
while total > cap do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  if #oldest == 0 then break end
  total = total - tonumber(redis.call('HGET', KEYS[3], oldest[1]) or 0)
  redis.call('HDEL', KEYS[3], oldest[1])
  redis.call('DEL', prefix .. oldest[1])
end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
"""
