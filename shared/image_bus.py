"""The gateway's side of pictures: store one for a worker and send `image.describe`.

A camera frame (a message holding just one picture) becomes the session's newest frame first, so
a worker reaching an older frame knows it is stale.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from celery import Celery

from shared import media_tasks
from shared.celery_app import TASK_IMAGE_DESCRIBE, send
from shared.keys import Keys
from shared.messages import DescribeImageRequest, Priority, new_id


class ImageBus:
    def __init__(self, client: aioredis.Redis, keys: Keys, celery: Celery, *, ttl_s: int) -> None:
        self._r = client
        self._keys = keys
        self._celery = celery
        self._ttl_s = ttl_s

    async def describe(
        self,
        session_id: str,
        item_id: str,
        index: int,
        data: bytes,
        *,
        frame: bool,
        priority: Priority = "interactive",
    ) -> None:
        blob = self._keys.blob(new_id("blob"))
        request = DescribeImageRequest(
            session_id=session_id, item_id=item_id, content_index=index, blob_key=blob, frame=frame
        )
        payload = request.model_dump(mode="json")
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.set(blob, data, ex=self._ttl_s)
            if frame:
                pipe.set(self._keys.latest_frame(session_id), item_id, ex=self._ttl_s)
            media_tasks.note(
                pipe,
                self._keys.media_tasks(session_id),
                item_id=item_id,
                part=index,
                task=TASK_IMAGE_DESCRIBE,
                payload=payload,
                priority=priority,
                ttl_s=self._ttl_s,
                resend=not frame,  # a frame is soon stale: not worth sending again
            )
            await pipe.execute()
        await asyncio.to_thread(send, self._celery, TASK_IMAGE_DESCRIBE, payload, priority)
