"""What the gateway builds once at startup and hands to every route."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from celery import Celery

from gateway.batch.files import FileStore
from gateway.batch.store import BatchStore
from gateway.quotas import Quotas
from shared.audio_bus import AudioBus
from shared.celery_app import create_celery
from shared.clients import DecoderClient, JobClient, TranscriptionClient
from shared.config import Settings
from shared.image_bus import ImageBus
from shared.keys import Keys
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
    images: ImageBus
    files: FileStore
    batches: BatchStore
    quotas: Quotas

    @classmethod
    def build(cls, settings: Settings) -> Services:
        keys = Keys(settings.key_prefix)
        client = aioredis.Redis.from_url(settings.redis_url, health_check_interval=30)
        celery = create_celery(settings)
        sessions = SessionStore(client, keys, ttl_s=settings.session_ttl_s, max_items=settings.max_conversation_items)
        responses = AsyncResponseStore(client, keys, ttl_s=settings.session_ttl_s)
        audio = AudioBus(client, keys, celery, ttl_s=settings.session_ttl_s)
        # The broker's queues are readable when the broker is this Redis (the default).
        jobs = JobClient(responses, celery, settings, client, broker=client if settings.broker_url is None else None)
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
            images=images,
            files=FileStore(client, keys, ttl_s=settings.files_ttl_s),
            batches=BatchStore(client, keys, ttl_s=settings.files_ttl_s),
            quotas=Quotas(client, keys, settings),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        self.celery.close()
