"""Send again the media tasks a response waits on when the worker that took them died.

With a Redis broker a task taken by a killed worker comes back only after the visibility timeout
(minutes), while a person waits for the answer now. A decoder that has waited a while for a picture
description or a transcript sends the noted task again (shared/media_tasks.py) when that task's
queue is empty, and wakes the session's audio stream when no live worker holds it. Copies are
harmless: workers skip media already described. AMQP brokers redeliver a dead consumer's tasks at
once, so nothing is done there.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from celery import Celery

from shared import media_tasks
from shared.celery_app import QUEUE_AUDIO, QUEUE_IMAGE, TASK_AUDIO_STREAM, create_celery, redis_queue_lists, send
from shared.config import Settings
from shared.keys import Keys
from shared.messages import AudioStreamRequest, InputAudio, InputImage, MessageItem
from shared.redis_text import text
from workers.presence import lock_holder_alive

log = logging.getLogger(__name__)

_PENDING_TTL_S = 60  # as shared/audio_bus.py: one audio.stream task per session waits at a time


class MediaRedelivery:
    def __init__(self, settings: Settings, client: redis.Redis, keys: Keys) -> None:
        self._settings = settings
        self._r = client
        self._keys = keys
        self.grace_s = max(10.0, 4 * settings.lease_ttl_s)  # as the gateway's own lost-task check
        self._lists = redis_queue_lists(settings.celery_broker_url, (QUEUE_AUDIO, QUEUE_IMAGE))
        self._broker: redis.Redis | None = None
        self._celery: Celery | None = None

    def check(self, session_id: str, items: list[MessageItem], waited_s: float) -> int:
        """Send again what these items still wait on and looks lost; the number of tasks sent."""
        if not self._lists or waited_s < self.grace_s:
            return 0
        pending = {
            media_tasks.field(item.id, i if isinstance(part, InputImage) else "audio")
            for item in items
            if item.id is not None
            for i, part in enumerate(item.content)
            if (isinstance(part, InputImage) and part.description is None)
            or (isinstance(part, InputAudio) and part.transcript is None)
        }
        if not pending:
            return 0
        sent = 0
        key = self._keys.media_tasks(session_id)
        notes: Any = self._r.hgetall(key)
        for raw_field, raw in notes.items():
            field = text(raw_field)
            note = media_tasks.parse(raw)
            queue = note.task.split(".", 1)[0]
            if field not in pending or time.time() - note.sent_at < self.grace_s or self._queued(queue):
                continue
            log.warning(
                "session %s: %s of %s was taken by a worker that is gone; sending it again",
                session_id,
                note.task,
                field,
            )
            self._r.hset(key, field, note.model_copy(update={"sent_at": time.time()}).model_dump_json())
            send(self._app(), note.task, note.payload, note.priority)
            sent += 1
        if any(f.endswith(":audio") for f in pending) and self._stream_stalled(session_id):
            log.warning("session %s: no live audio worker holds its stream; waking it", session_id)
            send(self._app(), TASK_AUDIO_STREAM, AudioStreamRequest(session_id=session_id).model_dump(mode="json"))
            sent += 1
        return sent

    def _stream_stalled(self, session_id: str) -> bool:
        """Nobody alive holds the session's audio and no stream task waits for it."""
        held: Any = self._r.get(self._keys.audio_lock(session_id))
        if held is not None and lock_holder_alive(self._r, held):
            return False
        if self._queued(QUEUE_AUDIO):
            return False
        # Mark the session's stream task as waiting, as new audio does (a copy is harmless: the lock).
        self._r.set(self._keys.audio_pending(session_id), 1, ex=_PENDING_TTL_S)
        return True

    def _queued(self, queue: str) -> bool:
        broker = self._broker_client()
        return any(broker.llen(name) for (q, _), name in self._lists.items() if q == queue)

    def _broker_client(self) -> redis.Redis:
        if self._broker is None:
            self._broker = redis.Redis.from_url(self._settings.celery_broker_url)
        return self._broker

    def _app(self) -> Celery:
        if self._celery is None:
            self._celery = create_celery(self._settings)
        return self._celery
