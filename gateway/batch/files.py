"""Files of the Files API in Redis: batch inputs people upload, and the outputs batches write.

Redis, not a disk: every gateway replica sees the same files, and they travel with the rest of the
service's state. Each file is two keys with one TTL (`files_ttl_s`): its metadata (with the owner, the
digest of the API key that uploaded it) and its bytes. A file is visible only to its owner; to
anyone else it does not exist. `owner=None` is the service itself (a batch reading its input).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import redis.asyncio as aioredis

from shared.errors import NotFound
from shared.keys import Keys
from shared.messages import FileObject, FilePurpose
from shared.redis_text import text as _text


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


class FileStore:
    def __init__(self, client: aioredis.Redis, keys: Keys, *, ttl_s: int) -> None:
        self._r = client
        self._keys = keys
        self._ttl_s = ttl_s

    async def create(
        self, data: bytes, filename: str, purpose: FilePurpose, owner: str, file_id: str | None = None
    ) -> FileObject:
        """Store a file. Writing again under the same `file_id` replaces it (a batch finalized twice)."""
        now = int(time.time())
        obj = FileObject(
            id=file_id or new_file_id(),
            bytes=len(data),
            created_at=now,
            expires_at=now + self._ttl_s,
            filename=filename,
            purpose=purpose,
        )
        k = self._keys
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.set(k.file_data(obj.id), data, ex=self._ttl_s)
            pipe.set(k.file(obj.id), json.dumps({"owner": owner, "file": obj.model_dump()}), ex=self._ttl_s)
            pipe.zadd(k.files_index(), {obj.id: time.time()})
            # Entries older than the TTL name files that are gone; listing prunes them too, but a
            # service whose files are never listed would otherwise grow this index forever.
            pipe.zremrangebyscore(k.files_index(), "-inf", time.time() - self._ttl_s)
            await pipe.execute()
        return obj

    async def get(self, file_id: str, owner: str | None) -> FileObject:
        raw = await self._r.get(self._keys.file(file_id))
        record = None if raw is None else json.loads(raw)
        if record is None or (owner is not None and record["owner"] != owner):
            raise NotFound(f"No such file: '{file_id}'.", param="file_id")
        return FileObject.model_validate(record["file"])

    async def content(self, file_id: str, owner: str | None) -> bytes:
        await self.get(file_id, owner)
        data: Any = await self._r.get(self._keys.file_data(file_id))
        if data is None:
            raise NotFound(f"No such file: '{file_id}'.", param="file_id")
        return bytes(data)

    async def delete(self, file_id: str, owner: str) -> None:
        await self.get(file_id, owner)
        k = self._keys
        removed = await self._r.delete(k.file(file_id), k.file_data(file_id))
        await self._r.zrem(k.files_index(), file_id)
        if not removed:
            raise NotFound(f"No such file: '{file_id}'.", param="file_id")

    async def page(
        self, *, owner: str, purpose: str | None, limit: int, after: str | None, newest_first: bool
    ) -> list[FileObject]:
        """Files in creation order, after the file `after`; entries whose file expired are pruned."""
        index = self._keys.files_index()
        ids = [_text(i) for i in await self._r.zrange(index, 0, -1, desc=newest_first)]
        if after is not None:
            ids = ids[ids.index(after) + 1 :] if after in ids else []
        out: list[FileObject] = []
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            raws = await self._r.mget([self._keys.file(i) for i in chunk])
            gone = [i for i, raw in zip(chunk, raws, strict=True) if raw is None]
            if gone:
                await self._r.zrem(index, *gone)
            for raw in raws:
                record = None if raw is None else json.loads(raw)
                if record is not None and record["owner"] == owner:
                    obj = FileObject.model_validate(record["file"])
                    if purpose is None or obj.purpose == purpose:
                        out.append(obj)
            if len(out) >= limit:
                break
        return out[:limit]
