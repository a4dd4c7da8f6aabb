"""A task a worker took and died with before starting it is sent again (real Redis broker, no workers)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import redis
import redis.asyncio as aioredis

from shared.celery_app import create_celery
from shared.clients import JobClient
from shared.config import Settings
from shared.keys import Keys
from shared.messages import ResponseFinal
from shared.response_state import AsyncResponseStore


async def test_a_task_taken_by_a_dead_worker_is_sent_again(fresh_redis_url):
    settings = Settings(redis_url=fresh_redis_url, key_prefix="losttest", lease_ttl_s=1.0)
    client = aioredis.Redis.from_url(fresh_redis_url)
    sync = redis.Redis.from_url(fresh_redis_url)
    sync.flushdb()
    store = AsyncResponseStore(client, Keys("losttest"), ttl_s=60)
    celery = create_celery(settings)
    jobs = JobClient(store, celery, settings, client)
    sync.set("losttest:worker:decode:w1", "{}")  # a decoder is running (the one about to lose the task)
    unavailable = ResponseFinal(status="failed", error_code="decoder_unavailable")
    payload = {"v": 1, "response_id": "resp_lost"}
    run = jobs.run("decode.generate", "resp_lost", "sess", payload, unavailable, detached=True)
    reader = asyncio.create_task(anext(run))
    try:
        await asyncio.sleep(0.5)
        taken = sync.rpop("decode")  # a worker took the message, then died before claiming the response
        assert taken is not None and json.loads(taken)["headers"]["task"] == "decode.generate"
        for _ in range(30):  # resent within max(10 s, 4 leases)
            await asyncio.sleep(0.5)
            if sync.llen("decode"):
                break
        assert sync.llen("decode") == 1, "the lost task was not sent again"
        assert (await store.state("resp_lost"))["status"] == "queued"
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await run.aclose()
        celery.close()
        await client.aclose()
