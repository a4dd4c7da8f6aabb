"""How the gateway reaches the decoder: send a task by name, follow its Redis Stream.

`DecoderClient.generate` yields the response's events as workers append them. While it waits it
watches the response: a worker whose lease expired has died, so the task is sent again and the
next worker continues from the tokens already streamed; a response no worker picks up in time
fails with a clear error instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from celery import Celery

from shared.celery_app import TASK_DECODE_GENERATE
from shared.config import Settings
from shared.messages import GenerateRequest, ResponseFinal, TokenDelta
from shared.response_state import QUEUED, RUNNING, AsyncResponseStore

log = logging.getLogger(__name__)

_BLOCK_MS = 500


class DecoderClient:
    def __init__(self, store: AsyncResponseStore, celery: Celery, settings: Settings) -> None:
        self._store = store
        self._celery = celery
        self._settings = settings

    async def generate(self, request: GenerateRequest) -> AsyncIterator[TokenDelta | ResponseFinal]:
        """Start a response and yield its deltas, ending with exactly one `ResponseFinal`.

        Leaving the iteration early (client gone) cancels the response.
        """
        rid = request.response_id
        await self._store.create(rid, request.session_id)
        await self._send(request)
        last_id = "0-0"
        finished = False
        try:
            while True:
                entries = await self._store.read(rid, last_id, _BLOCK_MS)
                for entry_id, event in entries:
                    last_id = entry_id
                    yield event
                    if isinstance(event, ResponseFinal):
                        finished = True
                        return
                if not entries:
                    await self._watch(request)
        finally:
            if not finished:
                await asyncio.shield(self.cancel(rid))

    async def cancel(self, response_id: str, reason: str = "client_cancelled") -> None:
        """Ask the worker to stop; a response still waiting in the queue ends at once."""
        await self._store.request_cancel(response_id, reason)
        await self._store.finish_unclaimed(response_id, ResponseFinal(status="cancelled", reason=reason))

    async def _send(self, request: GenerateRequest) -> None:
        # send_task publishes synchronously through kombu; keep it off the event loop.
        await asyncio.to_thread(
            self._celery.send_task,
            TASK_DECODE_GENERATE,
            kwargs={"request": request.model_dump(mode="json")},
        )

    async def _watch(self, request: GenerateRequest) -> None:
        rid = request.response_id
        state = await self._store.state(rid)
        status = state.get("status")
        if status == RUNNING and not await self._store.lease_alive(rid):
            if await self._store.requeue_if_abandoned(rid):
                log.warning("decoder working on %s stopped renewing its lease; sending it again", rid)
                await self._send(request)
        elif status == QUEUED:
            waited = time.time() - float(state.get("queued_at", time.time()))
            if waited > self._settings.decode_queue_timeout_s:
                await self._store.finish_unclaimed(
                    rid,
                    ResponseFinal(
                        status="failed",
                        error_code="decoder_unavailable",
                        error_message=f"No decoder worker took the response within "
                        f"{self._settings.decode_queue_timeout_s:.0f} s.",
                    ),
                )
