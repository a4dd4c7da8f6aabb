"""How the gateway reaches workers for results a client waits on: send a task by name, follow a stream.

`JobClient.run` starts a job (a response, a transcription) and yields the events workers append
to its Redis Stream. While it waits it watches the job by the rules of `shared/recovery.py`: a
worker whose lease expired has died, so the task is sent again and the next worker continues where
the stream ends; a task taken by a worker that died before starting it is sent again; a job no
worker picks up in time fails with a clear error instead of hanging; the media a response waits on
are watched too (`shared/media_tasks.py`). `DecoderClient` and `TranscriptionClient` are the two
kinds of job the gateway runs, and `SpeechClient` the third: one piece of speech.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from celery import Celery

from shared import recovery
from shared.celery_app import TASK_AUDIO_TRANSCRIBE, TASK_DECODE_GENERATE, TASK_SPEECH_SYNTHESIZE, send
from shared.config import Settings
from shared.keys import Keys
from shared.media_tasks import MediaWatch, Needs
from shared.messages import (
    FinalEvent,
    GenerateRequest,
    Priority,
    ResponseFinal,
    StreamEvent,
    SynthesizeRequest,
    TranscribeRequest,
    TranscriptionFinal,
)
from shared.response_state import QUEUED, RUNNING, AsyncResponseStore
from shared.worker_presence import live_workers, recent_failures

log = logging.getLogger(__name__)

# A job's events are awaited this long at most before its state is looked at (two more round
# trips): a quarter of the lease or of the queue timeout, so a dead worker or a job no worker takes
# is noticed soon after its time is up, and at most 2 s. A fixed 500 ms made the gateway wake two
# or three times per token when 16 replies each got a token a second.
_MAX_BLOCK_S = 2.0


class JobClient:
    def __init__(
        self,
        store: AsyncResponseStore,
        celery: Celery,
        settings: Settings,
        client: aioredis.Redis,
        media: MediaWatch | None = None,
    ) -> None:
        self._store = store
        self._celery = celery
        self._settings = settings
        self._client = client  # the service's Redis: worker presence
        self._keys = Keys(settings.key_prefix)
        self._media = media
        limit = min(settings.lease_ttl_s, settings.decode_queue_timeout_s) / 4
        self._block_ms = int(1000 * min(_MAX_BLOCK_S, max(0.1, limit)))
        self._resent: dict[str, float] = {}  # job id -> when its task was last sent again
        self._alive: dict[str, tuple[float, bool]] = {}  # worker kind -> (when looked, any running)

    async def run(
        self,
        task: str,
        job_id: str,
        owner: str,
        payload: dict[str, Any],
        unavailable: FinalEvent,
        *,
        priority: Priority = "interactive",
        attach: bool = False,
        detached: bool = False,
        waits_on: Needs | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Start a job and yield its events, ending with exactly one final event.

        `unavailable` is the final event used when no worker takes the job in time. Leaving the
        iteration early (client gone) cancels the job, unless it is `detached` (batch work, which
        another gateway may go on following). With `attach`, a job that already exists (started
        by a gateway that has since stopped) is followed from its first event instead of being
        started again. `waits_on` names the session and items whose media the job needs.
        """
        last_id = "0-0"
        finished = False
        try:
            # Inside the try: a caller that stops waiting while the job is being created or sent (a
            # barge-in cancelling a reply's next pieces) still cancels it, so no worker does it for nobody.
            if not (attach and await self._store.exists(job_id)):
                await self._store.create(job_id, owner)
                await self._send(task, payload, priority)
            while True:
                entries = await self._store.read(job_id, last_id, self._block_ms)
                for entry_id, event in entries:
                    last_id = entry_id
                    yield event
                    if isinstance(event, ResponseFinal | TranscriptionFinal):
                        finished = True
                        return
                if not entries:
                    await self._watch(task, job_id, payload, unavailable, priority)
                    if waits_on is not None and self._media is not None:
                        await self._media.check(waits_on)
        finally:
            self._resent.pop(job_id, None)
            if waits_on is not None and self._media is not None:
                self._media.forget(waits_on.session_id)
            if not finished and not detached:
                await asyncio.shield(self.cancel(job_id))

    async def forget(self, job_ids: list[str]) -> None:
        """Delete the keys of jobs that have ended (their final event read)."""
        await self._store.forget(job_ids)

    async def cancel(self, job_id: str, reason: str = "client_cancelled") -> None:
        """Ask the worker to stop; a job still waiting in the queue ends at once."""
        await self._store.request_cancel(job_id, reason)
        await self._store.finish_unclaimed(job_id, ResponseFinal(status="cancelled", reason=reason))

    async def _send(self, task: str, payload: dict[str, Any], priority: Priority) -> None:
        # Publishing is synchronous in kombu; keep it off the event loop.
        await asyncio.to_thread(send, self._celery, task, payload, priority)

    async def _watch(
        self, task: str, job_id: str, payload: dict[str, Any], unavailable: FinalEvent, priority: Priority
    ) -> None:
        state = await self._store.state(job_id)
        status = state.get("status")
        if status == RUNNING and not await self._store.lease_alive(job_id):
            if await self._store.requeue_if_abandoned(job_id):
                log.warning("the worker on %s stopped renewing its lease; sending the job again", job_id)
                await self._send(task, payload, priority)
        elif status == QUEUED:
            waited = time.time() - float(state.get("queued_at", time.time()))
            kind = task.split(".", 1)[0]
            if waited > self._settings.decode_queue_timeout_s:
                await self._store.finish_unclaimed(job_id, unavailable)
            elif waited > recovery.ABSENT_GRACE_S and not await self._kind_alive(kind):
                # No worker of the kind at all: say so now rather than after the queue timeout.
                message = f"No {kind} worker is running (start one: mmstream worker {kind})."
                if failures := await recent_failures(self._client, self._keys, kind):
                    message += f" The last one {failures[0]['reason']}."
                await self._store.finish_unclaimed(job_id, unavailable.model_copy(update={"error_message": message}))
            elif await self._lost(task, job_id, waited):
                # A worker took the task and died before starting it: the broker would hand it out
                # again only after its visibility timeout. A second copy is harmless (claims are atomic).
                log.warning("the task of %s is neither queued nor started; sending it again", job_id)
                self._resent[job_id] = time.monotonic()
                await self._send(task, payload, priority)

    async def _kind_alive(self, kind: str) -> bool:
        """Whether any worker of a kind is running; read at most every few seconds (it scans keys)."""
        checked_at, alive = self._alive.get(kind, (0.0, True))
        if time.monotonic() - checked_at > recovery.ABSENT_GRACE_S / 2:
            alive = bool(await live_workers(self._client, self._keys, kind))
            self._alive[kind] = (time.monotonic(), alive)
        return alive

    async def _lost(self, task: str, job_id: str, waited: float) -> bool:
        """Whether a queued job's task has left the queue without being started.

        Workers take a task only when a thread is free for it and claim it at once, so a job still
        queued a while after its queue ran empty had its task taken by a worker that died.
        """
        grace = recovery.lost_after_s(self._settings)
        if waited < grace or time.monotonic() - self._resent.get(job_id, 0.0) < grace:
            return False
        return not await asyncio.to_thread(recovery.queued, self._celery, task.split(".", 1)[0])


class DecoderClient:
    def __init__(self, jobs: JobClient, settings: Settings) -> None:
        self._jobs = jobs
        self._settings = settings

    async def generate(
        self, request: GenerateRequest, *, attach: bool = False, detached: bool = False
    ) -> AsyncIterator[StreamEvent]:
        """Yield the response's token deltas, ending with exactly one `ResponseFinal`."""
        wait = self._settings.decode_queue_timeout_s
        unavailable = ResponseFinal(
            status="failed",
            error_code="decoder_unavailable",
            error_message=f"No decoder worker took the response within {wait:.0f} s.",
        )
        payload = request.model_dump(mode="json")
        async for event in self._jobs.run(
            TASK_DECODE_GENERATE,
            request.response_id,
            request.session_id,
            payload,
            unavailable,
            priority=request.priority,
            attach=attach,
            detached=detached,
            waits_on=Needs(request.session_id, request.item_ids, give_up=not request.require_media),
        ):
            yield event

    async def cancel(self, response_id: str, reason: str = "client_cancelled") -> None:
        await self._jobs.cancel(response_id, reason)


class TranscriptionClient:
    def __init__(self, jobs: JobClient, settings: Settings) -> None:
        self._jobs = jobs
        self._settings = settings

    async def transcribe(
        self,
        request: TranscribeRequest,
        priority: Priority = "interactive",
        *,
        attach: bool = False,
        detached: bool = False,
    ) -> AsyncIterator[StreamEvent]:
        """Yield the transcription's segments, ending with exactly one `TranscriptionFinal`."""
        assert request.job_id is not None
        wait = self._settings.decode_queue_timeout_s
        unavailable = TranscriptionFinal(
            status="failed",
            error_code="audio_unavailable",
            error_message=f"No audio worker took the job within {wait:.0f} s.",
        )
        payload = request.model_dump(mode="json")
        async for event in self._jobs.run(
            TASK_AUDIO_TRANSCRIBE,
            request.job_id,
            "http",
            payload,
            unavailable,
            priority=priority,
            attach=attach,
            detached=detached,
        ):
            yield event


class SpeechClient:
    def __init__(self, jobs: JobClient, settings: Settings) -> None:
        self._jobs = jobs
        self._settings = settings

    async def synthesize(
        self, request: SynthesizeRequest, owner: str, priority: Priority = "interactive"
    ) -> AsyncGenerator[StreamEvent, None]:
        """Yield the piece's `AudioChunk`s, ending with exactly one `ResponseFinal`."""
        wait = self._settings.decode_queue_timeout_s
        unavailable = ResponseFinal(
            status="failed",
            error_code="speech_unavailable",
            error_message=f"No speech worker took the text within {wait:.0f} s.",
        )
        payload = request.model_dump(mode="json")
        async for event in self._jobs.run(
            TASK_SPEECH_SYNTHESIZE, request.job_id, owner, payload, unavailable, priority=priority
        ):
            yield event

    async def forget(self, job_id: str) -> None:
        """A piece whose final event was read: its audio is gone from Redis at once, not at its TTL."""
        await self._jobs.forget([job_id])
