"""What the gateway builds once at startup and hands to every route."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from celery import Celery
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from gateway.batch.files import FileStore
from gateway.batch.store import BatchStore
from gateway.quotas import Quotas
from shared.audio_bus import AudioBus
from shared.celery_app import create_celery
from shared.clients import DecoderClient, JobClient, SpeechClient, TranscriptionClient
from shared.config import Settings
from shared.image_bus import ImageBus
from shared.keys import Keys
from shared.media_tasks import MediaWatch
from shared.response_state import AsyncResponseStore
from shared.sessions import SessionStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    keys: Keys
    redis: aioredis.Redis
    celery: Celery
    sessions: SessionStore
    responses: AsyncResponseStore
    decoder: DecoderClient
    audio: AudioBus
    transcriptions: TranscriptionClient
    speech: SpeechClient
    images: ImageBus
    files: FileStore
    batches: BatchStore
    quotas: Quotas

    @classmethod
    def build(cls, settings: Settings) -> Services:
        keys = Keys(settings.key_prefix)
        client = redis_client(settings.redis_url)
        celery = create_celery(settings)
        sessions = SessionStore(client, keys, ttl_s=settings.session_ttl_s, max_items=settings.max_conversation_items)
        responses = AsyncResponseStore(client, keys, ttl_s=settings.session_ttl_s)
        audio = AudioBus(client, keys, celery, ttl_s=settings.session_ttl_s)
        media = MediaWatch(client, keys, celery, sessions, settings)
        jobs = JobClient(responses, celery, settings, client, media)
        images = ImageBus(client, keys, celery, ttl_s=settings.session_ttl_s)
        return cls(
            settings=settings,
            keys=keys,
            redis=client,
            celery=celery,
            sessions=sessions,
            responses=responses,
            decoder=DecoderClient(jobs, settings),
            audio=audio,
            transcriptions=TranscriptionClient(jobs, settings),
            speech=SpeechClient(jobs, settings),
            images=images,
            files=FileStore(client, keys, ttl_s=settings.files_ttl_s),
            batches=BatchStore(client, keys, ttl_s=settings.files_ttl_s),
            quotas=Quotas(client, keys, settings),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        self.celery.close()


def redis_client(url: str) -> aioredis.Redis:
    """The gateway's Redis client.

    After Redis restarts, each pooled connection still points at the old server, and a command on one
    fails once with "Connection closed by server" (a new session's first command did, in CI). One
    retry on a fresh connection hides that from clients.
    """
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1)
    return aioredis.Redis.from_url(url, health_check_interval=30, retry=retry)
