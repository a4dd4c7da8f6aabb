"""Every key a session, a response or a file leaves in Redis goes with its owner or expires (real Redis)."""

import time

import redis
import redis.asyncio as aioredis

from gateway.batch.files import FileStore
from gateway.batch.store import MAX_WINDOW_S, BatchStore
from shared.keys import Keys
from shared.messages import BatchObject, InputAudio, InputImage, InputText, MessageItem
from shared.response_state import AsyncResponseStore
from shared.sessions import SessionStore, SessionWriter

KEYS = Keys("lifetest")


async def test_dropping_a_session_deletes_its_items_media_and_frames(fresh_redis_url):
    client = aioredis.Redis.from_url(fresh_redis_url)
    store = SessionStore(client, KEYS, ttl_s=600, max_items=10)
    picture = MessageItem(
        id="pic",
        role="user",
        content=[
            InputText(type="input_text", text="look"),
            InputImage(type="input_image"),
            InputImage(type="input_image"),
        ],
    )
    spoken = MessageItem(id="say", role="user", content=[InputAudio(type="input_audio")])
    await store.add_item("s", picture, None)
    await store.add_item("s", spoken, None)
    # What workers store for them, as they do it: with a TTL of an hour.
    media = [
        KEYS.item_image_embedding("s", "pic", 1),
        KEYS.item_image_embedding("s", "pic", 2),
        KEYS.item_audio("s", "say"),
        KEYS.item_encoder_states("s", "say"),
        KEYS.latest_frame("s"),
        KEYS.last_frame("s"),
    ]
    for key in media:
        await client.set(key, b"x" * 1000, ex=3600)
    other = KEYS.item_audio("t", "say")  # another session's
    await client.set(other, b"y", ex=3600)
    await store.drop("s")
    assert await client.exists(*media, KEYS.session_items("s"), KEYS.session_order("s")) == 0
    assert await client.exists(other) == 1
    await client.aclose()


async def test_a_turn_a_worker_adds_after_the_session_closed_expires(fresh_redis_url):
    client = aioredis.Redis.from_url(fresh_redis_url)
    store = SessionStore(client, KEYS, ttl_s=600, max_items=10)
    writer = SessionWriter(redis.Redis.from_url(fresh_redis_url), KEYS, ttl_s=600, max_items=10)
    await store.drop("late")  # the socket closed while the audio worker was ending the turn
    writer.add_item("late", MessageItem(id="vad", role="user", content=[InputAudio(type="input_audio")]))
    for key in (KEYS.session_items("late"), KEYS.session_order("late")):
        assert 0 < await client.ttl(key) <= 600, key
    await client.aclose()


async def test_forgetting_ended_responses_deletes_their_keys(fresh_redis_url):
    client = aioredis.Redis.from_url(fresh_redis_url)
    responses = AsyncResponseStore(client, KEYS, ttl_s=600)
    await responses.create("r1", "s")
    await client.xadd(KEYS.response_events("r1"), {"m": "{}"})
    await responses.request_cancel("r1", "client_cancelled")
    await responses.create("r2", "s")
    await responses.forget(["r1"])
    assert await client.exists(KEYS.response("r1"), KEYS.response_events("r1"), KEYS.response_cancel("r1")) == 0
    assert await client.exists(KEYS.response("r2")) == 1
    await responses.forget([])
    await client.aclose()


async def test_the_files_index_drops_entries_of_expired_files_without_being_listed(fresh_redis_url):
    client = aioredis.Redis.from_url(fresh_redis_url)
    files = FileStore(client, KEYS, ttl_s=60)
    await client.zadd(KEYS.files_index(), {"file-gone": time.time() - 61})  # its keys expired a second ago
    made = await files.create(b"{}\n", "in.jsonl", "batch", "owner")
    assert [m.decode() for m in await client.zrange(KEYS.files_index(), 0, -1)] == [made.id]
    await client.aclose()


async def test_the_batches_index_drops_entries_of_expired_batches_without_being_listed(fresh_redis_url):
    client = aioredis.Redis.from_url(fresh_redis_url)
    batches = BatchStore(client, KEYS, ttl_s=60)
    gone = time.time() - MAX_WINDOW_S - 61  # made longer ago than any batch's keys live
    await client.zadd(KEYS.batches_index(), {"batch-gone": gone})
    now = int(time.time())
    batch = BatchObject(
        id="batch-new",
        endpoint="/v1/chat/completions",
        input_file_id="file-x",
        completion_window="24h",
        status="validating",
        created_at=now,
        expires_at=now + 86400,
    )
    await batches.create(batch, "owner")
    assert [m.decode() for m in await client.zrange(KEYS.batches_index(), 0, -1)] == ["batch-new"]
    await client.aclose()
