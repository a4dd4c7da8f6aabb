"""The session's media tasks in flight, so that a task a dead worker took can be sent again.

With a Redis broker, a task taken by a worker that is then killed comes back only after the
broker's visibility timeout (minutes). The gateway notes each picture and speech task it sends in
a per-session hash; the worker removes the note when it is done; a decoder waiting on that media
sends the task again once it has waited a while and the queue is empty (see
workers/decoder/redelivery.py). Redoing a task is harmless: workers skip media already described.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel

from shared.messages import Priority


class MediaTask(BaseModel):
    task: str
    payload: dict[str, Any]
    priority: Priority = "interactive"
    sent_at: float


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
) -> None:
    """Add the note to a (sync or async) Redis pipeline."""
    entry = MediaTask(task=task, payload=payload, priority=priority, sent_at=time.time())
    pipe.hset(key, field(item_id, part), entry.model_dump_json())
    pipe.expire(key, ttl_s)


def parse(raw: bytes | str) -> MediaTask:
    return MediaTask.model_validate(json.loads(raw))
