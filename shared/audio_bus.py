"""The gateway's side of a session's audio: write the input log, read the workers' events.

Appends, commits and clears go into one Redis Stream per session in arrival order; an audio
worker applies them in that order under a per-session lock. At most one `audio.stream` task per
session waits in the queue at a time: a slow worker catches up on everything in one pass instead
of working through a backlog of tasks.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal, cast

import redis.asyncio as aioredis
from celery import Celery

from shared import media_tasks, recovery, streams
from shared.celery_app import TASK_AUDIO_STREAM, TASK_AUDIO_TRANSCRIBE, send
from shared.keys import Keys
from shared.messages import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    AudioStreamRequest,
    Priority,
    SessionEvent,
    TranscribeRequest,
    new_id,
    session_event_adapter,
)


class AudioBus:
    def __init__(self, client: aioredis.Redis, keys: Keys, celery: Celery, *, ttl_s: int) -> None:
        self._r = client
        self._keys = keys
        self._celery = celery
        self._ttl_s = ttl_s

    async def append(self, session_id: str, pcm16: bytes, item_id: str) -> None:
        header = AudioAppend(samples=len(pcm16) // 2, item_id=item_id)
        await self._log(session_id, {streams.FIELD: header.model_dump_json(), "pcm": pcm16})

    async def commit(
        self, session_id: str, item_id: str, *, item_added: bool, priority: Priority = "interactive"
    ) -> None:
        commit = AudioCommit(item_id=item_id, item_added=item_added)
        if item_added:
            # The item waits for the stream to transcribe it: noted like any media task, so that a
            # stream whose worker died is woken again (shared/media_tasks.py).
            payload = AudioStreamRequest(session_id=session_id).model_dump(mode="json")
            async with self._r.pipeline(transaction=False) as pipe:
                media_tasks.note(
                    pipe,
                    self._keys.media_tasks(session_id),
                    item_id=item_id,
                    part="audio",
                    task=TASK_AUDIO_STREAM,
                    payload=payload,
                    priority=priority,
                    ttl_s=self._ttl_s,
                )
                await pipe.execute()
        await self._log(session_id, {streams.FIELD: commit.model_dump_json()})

    async def clear(self, session_id: str) -> None:
        await self._log(session_id, {streams.FIELD: AudioClear().model_dump_json()})

    async def transcribe_item(
        self,
        session_id: str,
        item_id: str,
        data: bytes,
        encoding: Literal["pcm16", "file"] = "pcm16",
        priority: Priority = "interactive",
    ) -> None:
        """Transcribe speech that came inside a conversation item, as a whole clip: 16 kHz PCM16, or
        a media file (wav, mp3, ...) the audio worker decodes."""
        blob = self._keys.blob(new_id("blob"))
        request = TranscribeRequest(blob_key=blob, encoding=encoding, session_id=session_id, item_id=item_id)
        payload = request.model_dump(mode="json")
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.set(blob, data, ex=self._ttl_s)
            key = self._keys.media_tasks(session_id)
            media_tasks.note(
                pipe,
                key,
                item_id=item_id,
                part="audio",
                task=TASK_AUDIO_TRANSCRIBE,
                payload=payload,
                priority=priority,
                ttl_s=self._ttl_s,
            )
            await pipe.execute()
        await asyncio.to_thread(send, self._celery, TASK_AUDIO_TRANSCRIBE, payload, priority)

    async def events(self, session_id: str, after: str, block_ms: int) -> list[tuple[str, SessionEvent]]:
        stream = self._keys.session_events(session_id)
        entries = await streams.read(self._r, stream, after, block_ms=block_ms, count=64)
        return [(entry_id, session_event_adapter.validate_json(raw)) for entry_id, raw in entries]

    async def _log(self, session_id: str, fields: dict[str, Any]) -> None:
        log = self._keys.audio_log(session_id)
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.xadd(log, cast(Any, fields))
            pipe.expire(log, self._ttl_s)
            pipe.set(self._keys.audio_pending(session_id), 1, nx=True, ex=recovery.AUDIO_PENDING_TTL_S)
            *_, scheduled = await pipe.execute()
        if scheduled:
            payload = AudioStreamRequest(session_id=session_id).model_dump(mode="json")
            await asyncio.to_thread(send, self._celery, TASK_AUDIO_STREAM, payload)
