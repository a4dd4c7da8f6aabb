"""A session's media tasks in flight, and the gateway's watch over them while a reply waits.

The gateway schedules every picture and speech task (`shared/image_bus.py`, `shared/audio_bus.py`)
and notes it in a per-session hash; the worker removes the note when it has written the result.
While a response waits on media, the gateway following it calls `MediaWatch.check`, which applies
the two deadlines of media here, where media is scheduled:

- a task not done `recovery.lost_after_s` after it was sent, with its queue empty, was taken by a
  worker that died: it is sent again (a copy is harmless: workers skip media already described);
- media not done `transcript_wait_s` after it was sent is given up: the part gets an empty
  transcript or description and the client an `ImageFailed` / `TranscriptFailed`, so the reply
  goes on without it.

The decoder only reads the items; it wakes on the session's event stream when they change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from celery import Celery
from pydantic import BaseModel

from shared import recovery, streams
from shared.celery_app import send
from shared.config import Settings
from shared.keys import Keys
from shared.messages import ImageFailed, Priority, TranscriptFailed
from shared.redis_text import text
from shared.sessions import SessionStore

log = logging.getLogger(__name__)

_CHECK_EVERY_S = 1.0


class MediaTask(BaseModel):
    task: str
    payload: dict[str, Any]
    priority: Priority = "interactive"
    sent_at: float
    resent_at: float = 0.0
    resend: bool = True  # a camera frame is soon stale: not worth sending again, only given up


def field(item_id: str, part: int | str) -> str:
    """The hash field of one picture (its content index) or one item's speech ("audio")."""
    return f"{item_id}:{part}"


def note(
    pipe: Any,
    key: str,
    *,
    item_id: str,
    part: int | str,
    task: str,
    payload: dict[str, Any],
    priority: Priority,
    ttl_s: int,
    resend: bool = True,
) -> None:
    """Add the note to a (sync or async) Redis pipeline."""
    entry = MediaTask(task=task, payload=payload, priority=priority, sent_at=time.time(), resend=resend)
    pipe.hset(key, field(item_id, part), entry.model_dump_json())
    pipe.expire(key, ttl_s)


def parse(raw: bytes | str) -> MediaTask:
    return MediaTask.model_validate(json.loads(raw))


class Needs(NamedTuple):
    """The media a response waits on: its session's items, and whether to give them up in time (a
    batch line fails instead, and is tried again later)."""

    session_id: str
    item_ids: Sequence[str]
    give_up: bool = True


class MediaWatch:
    def __init__(
        self, client: aioredis.Redis, keys: Keys, celery: Celery, sessions: SessionStore, settings: Settings
    ) -> None:
        self._r = client
        self._keys = keys
        self._celery = celery
        self._sessions = sessions
        self._settings = settings
        self._checked: dict[str, float] = {}  # session id -> when last checked

    async def check(self, needs: Needs) -> None:
        """Send again or give up the media these items wait on; at most once a second per session."""
        session_id = needs.session_id
        now = time.monotonic()
        if now - self._checked.get(session_id, 0.0) < _CHECK_EVERY_S:
            return
        self._checked[session_id] = now
        key = self._keys.media_tasks(session_id)
        notes: dict[Any, Any] = await self._r.hgetall(key)
        wanted = set(needs.item_ids)
        for raw_field, raw in notes.items():
            name = text(raw_field)
            if name.rpartition(":")[0] in wanted:
                await self._check_one(session_id, name, parse(raw), give_up=needs.give_up)

    def forget(self, session_id: str) -> None:
        self._checked.pop(session_id, None)

    async def _check_one(self, sid: str, name: str, task: MediaTask, *, give_up: bool) -> None:
        key = self._keys.media_tasks(sid)
        if give_up and time.time() - task.sent_at > self._settings.transcript_wait_s:
            await self._give_up(sid, name)
            return
        quiet = time.time() - max(task.sent_at, task.resent_at)
        if not task.resend or quiet < recovery.lost_after_s(self._settings):
            return
        queue = task.task.split(".", 1)[0]
        if await asyncio.to_thread(recovery.queued, self._celery, queue):
            return  # still waiting its turn
        log.warning("session %s: %s of %s was taken by a worker that is gone; sending it again", sid, task.task, name)
        await self._r.hset(key, name, task.model_copy(update={"resent_at": time.time()}).model_dump_json())
        await asyncio.to_thread(send, self._celery, task.task, task.payload, task.priority)

    async def _give_up(self, sid: str, name: str) -> None:
        """Let the reply go on without media no worker finished in time, and say so to the client."""
        await self._r.hdel(self._keys.media_tasks(sid), name)
        item_id, _, part = name.rpartition(":")
        wait = self._settings.transcript_wait_s
        event: ImageFailed | TranscriptFailed
        if part == "audio":
            if not await self._sessions.fill_in_transcript(sid, item_id, ""):
                return  # transcribed meanwhile, or deleted
            message = f"The speech was not transcribed within {wait:.0f} s (no audio worker finished it)."
            event = TranscriptFailed(item_id=item_id, code="media_unavailable", message=message)
        else:
            if not await self._sessions.fill_in_description(sid, item_id, int(part), ""):
                return
            message = f"The picture was not described within {wait:.0f} s (no image worker finished it)"
            event = ImageFailed(item_id=item_id, content_index=int(part), code="media_unavailable", message=message)
        log.warning("session %s: %s", sid, message)
        stream = self._keys.session_events(sid)
        await streams.publish_async(self._r, stream, event, ttl_s=self._settings.session_ttl_s)
