"""Conversations' KV caches kept in host memory once their slot is given to another conversation.

The engine keeps a conversation's cache in its slot after the reply, so its next turn reads only
what is new; with more conversations than slots, a slot is sooner or later given to another one.
Its state is then saved here first (llama.cpp's `llama_state_seq_get_data`), and a prompt that
continues it is loaded back into a free slot instead of being read again, as llama-server does with
its `--cache-ram` prompt cache. Least recently used states go first when the cap is reached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from workers.decoder.llama import SeqState


@dataclass(frozen=True)
class Saved:
    tokens: tuple[int, ...]
    state: SeqState


class HostCache:
    def __init__(self, capacity_bytes: int) -> None:
        self._capacity = capacity_bytes
        self._used = 0
        self._entries: OrderedDict[tuple[int, ...], SeqState] = OrderedDict()

    @property
    def used_bytes(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, tokens: list[int], state: SeqState) -> None:
        """Keep `state` (the cache of `tokens`); states of its prefixes are no longer needed."""
        if len(state) > self._capacity:
            return
        key = tuple(tokens)
        for other in [k for k in self._entries if key[: len(k)] == k]:
            self._drop(other)
        self._entries[key] = state
        self._used += len(state)
        while self._used > self._capacity:
            self._drop(next(iter(self._entries)))

    def best(self, tokens: list[int]) -> tuple[Saved, int] | None:
        """The saved state sharing the longest prefix with `tokens`, and that prefix's length."""
        found: tuple[Saved, int] | None = None
        for key, state in self._entries.items():
            n = common_prefix(key, tokens)
            if n and (found is None or n > found[1]):
                found = Saved(key, state), n
        if found is not None:
            self._entries.move_to_end(found[0].tokens)
        return found

    def _drop(self, key: tuple[int, ...]) -> None:
        self._used -= len(self._entries.pop(key))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
