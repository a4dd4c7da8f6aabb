"""The gateway's watch over the media a reply waits on (real Redis as broker and store, no workers).

A picture task taken off the queue by a worker that then died is sent again once it is
`lost_after_s` old and its queue is empty; media nobody finished within `transcript_wait_s` are
given up: the part is marked empty and the client told.
"""

from __future__ import annotations

import asyncio
import json
import time

import redis
import redis.asyncio as aioredis

from shared import streams
from shared.celery_app import create_celery
from shared.config import Settings
from shared.image_bus import ImageBus
from shared.keys import Keys
from shared.media_tasks import MediaWatch, Needs
from shared.messages import ImageFailed, InputImage, InputText, MessageItem, session_event_adapter
from shared.sessions import SessionStore

KEYS = Keys("mediatest")


async def _setup(url: str, **settings: float) -> tuple[aioredis.Redis, redis.Redis, SessionStore, ImageBus, MediaWatch]:
    config = Settings(redis_url=url, key_prefix="mediatest", **settings)
    client = aioredis.Redis.from_url(url)
    sync = redis.Redis.from_url(url)
    celery = create_celery(config)
    sessions = SessionStore(client, KEYS, ttl_s=60, max_items=10)
    images = ImageBus(client, KEYS, celery, ttl_s=60)
    item = MessageItem(
        id="pic", role="user", content=[InputImage(type="input_image"), InputText(type="input_text", text="What?")]
    )
    await sessions.add_item("s", item, None)
    await images.describe("s", "pic", 0, b"not really a png", frame=False)
    return client, sync, sessions, images, MediaWatch(client, KEYS, celery, sessions, config)


async def test_a_picture_taken_by_a_dead_worker_is_sent_again(fresh_redis_url):
    client, sync, _, _, watch = await _setup(fresh_redis_url, lease_ttl_s=1.0)
    taken = sync.rpop("image")  # a worker took the task, then died
    assert taken is not None and json.loads(taken)["headers"]["task"] == "image.describe"
    await watch.check(Needs("s", ["pic"]))
    assert sync.llen("image") == 0  # not yet: a worker may still be at it
    deadline = time.monotonic() + 20
    while not sync.llen("image") and time.monotonic() < deadline:  # lost after max(10 s, 4 leases)
        await asyncio.sleep(0.5)
        await watch.check(Needs("s", ["pic"]))
    assert sync.llen("image") == 1, "the lost picture task was not sent again"
    await watch.check(Needs("s", ["pic"]))
    assert sync.llen("image") == 1  # sent once, not at every check
    await client.aclose()


async def test_media_nobody_finished_in_time_are_given_up(fresh_redis_url):
    client, _, sessions, _, watch = await _setup(fresh_redis_url, transcript_wait_s=1.0)
    await watch.check(Needs("s", ["pic"], give_up=False))  # a batch line's media are never given up
    await asyncio.sleep(1.2)
    watch.forget("s")
    await watch.check(Needs("s", ["pic"], give_up=False))
    assert (await sessions.get_item("s", "pic")).pending_media()
    watch.forget("s")
    await watch.check(Needs("s", ["pic"]))
    item = await sessions.get_item("s", "pic")
    assert not item.pending_media() and item.text().startswith("[Picture: could not be read]")
    events = [
        session_event_adapter.validate_json(raw)
        for _, raw in await streams.read(client, KEYS.session_events("s"), "0", block_ms=100, count=10)
    ]
    assert len(events) == 1 and isinstance(events[0], ImageFailed), events
    assert events[0].code == "media_unavailable" and "not described within 1 s" in events[0].message
    assert not await client.hlen(KEYS.media_tasks("s"))  # the note is gone: given up once
    await client.aclose()
