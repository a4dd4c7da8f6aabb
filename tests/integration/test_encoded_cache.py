"""The image workers' cache of pictures a VLM's projector encoded, on a real Redis."""

import redis

from shared.keys import Keys
from workers.image.encoded_cache import EncodedCache, Entry


def _entry(n: int) -> Entry:
    return Entry(b'{"v": 1}', bytes([n]) * 400)


def test_the_least_recently_used_go_first_past_the_cap(fresh_redis_url: str):
    client = redis.Redis.from_url(fresh_redis_url)
    keys = Keys("mmtest")
    cache = EncodedCache(client, keys, "ab" * 32, ttl_s=60, cap_bytes=1000)
    for n in (1, 2):
        cache.put(f"d{n}", _entry(n))
    assert cache.get("d1") == _entry(1)  # d1 is now the most recently used
    cache.put("d3", _entry(3))  # 1200 bytes: one must go, and it is d2
    assert cache.get("d2") is None
    assert cache.get("d1") == _entry(1) and cache.get("d3") == _entry(3)
    projector = ("ab" * 32)[:16]
    assert client.zcard(keys.encoded_pictures_lru(projector)) == 2
    assert sorted(client.hkeys(keys.encoded_pictures_sizes(projector))) == [b"d1", b"d3"]
    for key in client.keys("mmtest:encoded:*"):
        assert 0 < client.ttl(key) <= 60, key


def test_an_entry_larger_than_the_cap_is_not_kept_and_an_expired_one_is_forgotten(fresh_redis_url: str):
    client = redis.Redis.from_url(fresh_redis_url)
    keys = Keys("mmtest")
    cache = EncodedCache(client, keys, "cd" * 32, ttl_s=60, cap_bytes=300)
    cache.put("big", _entry(1))
    assert cache.get("big") is None and not client.keys("mmtest:encoded:*")
    cache = EncodedCache(client, keys, "cd" * 32, ttl_s=60, cap_bytes=1000)
    cache.put("gone", _entry(2))
    client.delete(keys.encoded_picture(("cd" * 32)[:16], "gone"))  # as when its TTL ran out
    assert cache.get("gone") is None
    assert client.zcard(keys.encoded_pictures_lru(("cd" * 32)[:16])) == 0


def test_an_entry_another_version_wrote_is_encoded_again():
    from workers.image.service import _readable

    old = b'{"v": 1, "model": "mmproj:ab", "dtype": "float16", "shape": [16, 64], "before": [], "after": []}'
    assert not _readable(Entry(old, b""))
    assert _readable(Entry(b'{"v": 1, "model": "mmproj:ab", "shape": [16, 64], "layout": []}', b""))
