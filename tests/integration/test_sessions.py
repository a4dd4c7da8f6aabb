"""The conversation store against a real Redis."""

import pytest
import redis
import redis.asyncio as aioredis

from shared.errors import InvalidRequest
from shared.keys import Keys
from shared.messages import InputText, MessageItem
from shared.sessions import SessionStore, load_items

KEYS = Keys("sesstest")


def _item(item_id: str) -> MessageItem:
    return MessageItem(id=item_id, role="user", content=[InputText(type="input_text", text=item_id)])


async def test_order_previous_item_and_bounded_length(fresh_redis_url):
    client = aioredis.Redis.from_url(fresh_redis_url)
    store = SessionStore(client, KEYS, ttl_s=60, max_items=3)
    assert await store.add_item("s", _item("a"), None) is None
    assert await store.add_item("s", _item("c"), None) == "a"
    assert await store.add_item("s", _item("b"), "a") == "a"
    assert await store.item_ids("s") == ["a", "b", "c"]
    with pytest.raises(InvalidRequest) as info:
        await store.add_item("s", _item("x"), "nope")
    assert info.value.code == "item_not_found"
    with pytest.raises(InvalidRequest):
        await store.add_item("s", _item("a"), None)
    await store.add_item("s", _item("d"), None)  # over the limit: the oldest goes
    assert await store.item_ids("s") == ["b", "c", "d"]
    sync_client = redis.Redis.from_url(fresh_redis_url)
    assert [i.id for i in load_items(sync_client, KEYS, "s", ["d", "a", "b"])] == ["d", "b"]
    assert 0 < await client.ttl(KEYS.session_items("s")) <= 60
    await store.delete_item("s", "c")
    assert await store.item_ids("s") == ["b", "d"]
    await store.drop("s")
    assert await client.exists(KEYS.session_items("s"), KEYS.session_order("s")) == 0
    await client.aclose()


async def test_worker_adds_items_idempotently_and_fills_transcripts(fresh_redis_url):
    from shared.messages import InputAudio
    from shared.sessions import SessionWriter

    client = aioredis.Redis.from_url(fresh_redis_url)
    store = SessionStore(client, KEYS, ttl_s=60, max_items=10)
    writer = SessionWriter(redis.Redis.from_url(fresh_redis_url), KEYS, ttl_s=60, max_items=10)
    await store.add_item("w", _item("a"), None)
    spoken = MessageItem(id="sp", role="user", content=[InputAudio(type="input_audio")])
    assert writer.add_item("w", spoken) == "a"
    assert writer.add_item("w", spoken) == "a"  # redelivered: no second copy, the same place
    assert await store.item_ids("w") == ["a", "sp"]
    assert (await store.get_item("w", "sp")).pending_media()
    assert writer.set_transcript("w", "sp", "hello there")
    item = await store.get_item("w", "sp")
    assert not item.pending_media() and item.text() == "hello there"
    assert not writer.set_transcript("w", "a", "x")  # not an audio part
    assert not writer.set_transcript("w", "gone", "x")
    # The gateway gives media up only where no result arrived meanwhile.
    assert not await store.fill_in_transcript("w", "sp", "")
    late = MessageItem(id="late", role="user", content=[InputAudio(type="input_audio")])
    writer.add_item("w", late)
    assert await store.fill_in_transcript("w", "late", "")
    assert not (await store.get_item("w", "late")).pending_media()
    await client.aclose()
