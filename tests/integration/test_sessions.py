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
