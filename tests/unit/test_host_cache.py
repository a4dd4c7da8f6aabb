"""The host-memory tier of the decoder's prompt cache (pure logic; states are plain buffers)."""

from __future__ import annotations

import ctypes

from workers.decoder.host_cache import HostCache
from workers.decoder.llama import SeqState


def _state(size: int) -> SeqState:
    return SeqState((ctypes.c_uint8 * size)(), size)


def test_the_longest_shared_prefix_wins():
    cache = HostCache(1000)
    cache.put([1, 2, 3, 4], _state(10))
    cache.put([1, 2, 9], _state(10))
    found = cache.best([1, 2, 3, 4, 5])
    assert found is not None
    assert found[0].tokens == (1, 2, 3, 4) and found[1] == 4
    assert cache.best([7, 8]) is None


def test_a_longer_turn_replaces_the_states_of_its_prefixes():
    cache = HostCache(1000)
    cache.put([1, 2], _state(10))
    cache.put([1, 2, 3, 4], _state(20))
    assert len(cache) == 1 and cache.used_bytes == 20


def test_least_recently_used_states_go_first_at_the_cap():
    cache = HostCache(25)
    cache.put([1], _state(10))
    cache.put([2], _state(10))
    cache.best([1])  # used: [2] is now the oldest
    cache.put([3], _state(10))
    assert cache.best([2]) is None
    assert cache.best([1]) is not None and cache.best([3]) is not None
    assert cache.used_bytes == 20
    cache.put([4], _state(26))  # larger than the whole cache: not kept
    assert cache.best([4]) is None and cache.used_bytes == 20
