"""Soak: rounds of realtime sessions (text, speech, pictures) leave nothing behind in Redis.

A stack (one worker of each kind) on a Redis server of its own, so that its memory figures are ours
alone. Each round runs text, speech and picture sessions at once; once they have closed and a short
settle has passed:
(a) every key under the prefix has a TTL, but for the few in `LONG_LIVED`, whose owner is named;
    of Celery's keys only the queue bindings stay (no queued and no unacknowledged message);
(b) no key of a closed session or of its responses is left, whatever its TTL, and Redis' memory
    after rounds 2..N (used, dataset, and the bytes of our keys) stays within the bounds below
    of its value after round 1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import re
import statistics
import time
from typing import Any

import pytest
import redis

from tests.helpers import OwnRedis, Realtime, realtime, running_stack, stream_audio, wait_for
from tests.pictures import data_url, image_message, picture
from tests.speech import silence, speak

pytestmark = pytest.mark.slow

ROUNDS = 3  # two later rounds against the first still show a leak that adds up
PREFIX = "mmtest"
# The only keys without a TTL, each with its owner. None belongs to a session; they hold ids of
# files and batches, which have TTLs of their own.
LONG_LIVED = {
    f"{PREFIX}:files": "gateway.batch.files.FileStore: create and list drop entries of expired files",
    f"{PREFIX}:batches": "gateway.batch.store.BatchStore.page drops entries of expired batches",
    f"{PREFIX}:batches:active": "gateway.batch.store.BatchStore: a batch leaves it when it ends",
}
# Keys that stay after sessions end, with a TTL, and are not a session's: a request counter per API
# key, budget and minute (gateway.quotas, 120 s), and one presence key per worker (15 s).
NOT_A_SESSION = re.compile(rf"^{PREFIX}:(quota:[^:]+:(requests|audio_seconds|frames):\d+|worker:\w+:[\w-]+)$")
# Celery's own keys (kombu's Redis transport), outside the prefix. Kept: the bindings of each
# exchange (`_kombu.binding.<exchange>`, a member per queue bound to it; kombu 5.7 mirrors the
# permanent ones in `_kombu.binding_permanent.<exchange>` and keeps the deadlines of expiring ones
# in `_kombu.binding_deadlines`, which its sweep prunes): declared once per queue and per worker's
# remote-control queue, they must not grow with sessions. Gone once every task is done: the queue
# lists and the `unacked` hash and index (messages delivered and not yet acknowledged).
CELERY_BINDINGS = re.compile(r"^_kombu\.(binding\.|binding_permanent\.|binding_deadlines$)")
CELERY_TRANSIENT = re.compile(r"^unacked_mutex$")  # kombu's lock around restoring messages, with a TTL
# Bounds on growth after rounds 2..N over round 1's values. Measured on 2 cores (four runs): used
# memory less the clients' buffers, the dataset and our keys' bytes grew by 1.4 KB at most (a new
# minute's three quota counters); used memory by up to 120 KB, all of it the clients' buffers
# (connections the gateway's pool opens and frees). Before sessions deleted what they own, each
# round left about 500 KB of keys behind (TTL an hour).
STATE_BOUND = 16 * 1024  # used less clients, dataset, key bytes
USED_BOUND = 384 * 1024

SPOKEN = "What is the capital of France?"
NO_VAD = {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}}


def _owned_ids(rt: Realtime) -> set[str]:
    """The session's id and its responses' ids: what its keys are named after."""
    ids = {rt.events[0]["session"]["id"]}
    return ids | {e["response"]["id"] for e in rt.events if e["type"] == "response.created"}


async def _answered(rt: Realtime, **response: Any) -> None:
    _, done = await rt.ask_response(max_output_tokens=12, **response)
    assert done["response"]["status"] in ("completed", "incomplete"), done


async def _text_session(url: str) -> set[str]:
    async with realtime(url) as rt:
        for question in ("Name a primary colour.", "What is 7 times 8?"):
            await rt.send(_user(question))
            await _answered(rt)
        return _owned_ids(rt)


async def _speech_session(url: str, pcm: bytes) -> set[str]:
    """A question committed from the input audio buffer, then one sent as an input_audio part."""
    async with realtime(url) as rt:
        await rt.send(NO_VAD)
        await rt.until("session.updated")
        await stream_audio(rt, silence(0.2) + pcm + silence(0.3), pace=0)
        await rt.send({"type": "input_audio_buffer.commit"})
        done = (await rt.until("conversation.item.input_audio_transcription.completed"))[-1]
        assert "capital" in done["transcript"].lower(), done
        await _answered(rt)
        audio = base64.b64encode(pcm).decode()
        await rt.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": audio}]},
            }
        )
        await rt.until("conversation.item.input_audio_transcription.completed")
        await _answered(rt)
        return _owned_ids(rt)


async def _picture_session(url: str) -> set[str]:
    """A picture with a question, then the same camera frame twice: the second is dropped."""
    async with realtime(url) as rt:
        await rt.send(image_message(data_url(picture("circle", "red")), "What colour is the shape?"))
        await rt.until("conversation.item.done")
        await _answered(rt)
        frame = image_message(data_url(picture("square", "blue")))
        await rt.send(frame)
        await rt.until("conversation.item.done")
        await rt.send(frame)  # shows what the kept frame showed
        dropped = (await rt.until("conversation.item.input_image.dropped"))[-1]
        assert dropped["reason"] == "duplicate", dropped
        return _owned_ids(rt)


def _user(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


def _memory(client: redis.Redis) -> dict[str, int]:
    """Redis' used memory, the part that is not clients' buffers, the dataset, and `MEMORY USAGE` of our keys."""
    info = client.info("memory")
    key_bytes = sum(client.memory_usage(k) or 0 for k in client.scan_iter(match=f"{PREFIX}:*"))
    used, clients = int(info["used_memory"]), int(info["mem_clients_normal"])
    return {
        "used": used,
        "clients": clients,
        "state": used - clients,
        "dataset": int(info["used_memory_dataset"]),
        "key_bytes": key_bytes,
    }


def _leftovers(client: redis.Redis, owned: set[str]) -> list[str]:
    """Keys still named after a closed session or one of its responses, or any other session key."""
    keys = [k for k in client.scan_iter(match=f"{PREFIX}:*")]
    return [k for k in keys if not NOT_A_SESSION.match(k) or any(i in k for i in owned)]


def _nothing_left(client: redis.Redis, owned: set[str]) -> bool:
    return not _leftovers(client, owned)


def _audit(client: redis.Redis) -> dict[str, Any]:
    """Check (a): every key has a TTL or an owner; Celery holds no message. Returns what was seen."""
    ours, bindings = [], {}
    for key in client.scan_iter():
        if key.startswith(f"{PREFIX}:"):
            ttl = client.ttl(key)
            assert ttl != -1 or key in LONG_LIVED, f"{key} has no TTL and no owner"
            ours.append(key)
        elif CELERY_BINDINGS.match(key):
            bindings[key] = {"set": client.scard, "zset": client.zcard}[client.type(key)](key)
        else:
            assert CELERY_TRANSIENT.match(key) and client.ttl(key) != -1, f"unexpected key {key!r}"
    return {"keys": len(ours), "bindings": bindings}


async def _round(url: str, pcm: bytes) -> set[str]:
    """Text, speech and picture sessions at once; the ids of every session and response they had."""
    owned = await asyncio.gather(_text_session(url), _speech_session(url, pcm), _picture_session(url))
    return set().union(*owned)


async def test_redis_holds_nothing_of_sessions_that_ended(own_redis: OwnRedis, tmp_path):
    pcm = await asyncio.to_thread(speak, SPOKEN)
    figures: list[dict[str, Any]] = []
    with running_stack(own_redis.url, tmp_path, decoders=1, audio=1, image=1) as stack:
        client = stack.redis()
        before = _memory(client)
        for _ in range(ROUNDS):
            started = time.monotonic()
            owned = await _round(stack.ws, pcm)
            # The gateway drops a session's keys once it sees the socket close.
            with contextlib.suppress(TimeoutError):
                await asyncio.to_thread(wait_for, functools.partial(_nothing_left, client, owned), 15, "cleanup")
            await asyncio.sleep(1.0)
            assert not _leftovers(client, owned), {k: client.ttl(k) for k in _leftovers(client, owned)}
            seen = _audit(client)
            figures.append({**_memory(client), **seen, "round_s": round(time.monotonic() - started, 1)})
    print(f"\nbefore the first round: {before}")
    for n, f in enumerate(figures, 1):
        print(f"after round {n}: {f}")
    assert all(f["bindings"] == figures[0]["bindings"] for f in figures), "Celery's bindings grew"
    first, later = figures[0], figures[1:]
    # A leak adds up round after round, so it shows in the median of the later rounds. One round may
    # also catch Redis mid-way through growing its key table (+20 KB once in CI), hence the looser
    # bound on any single round; before the fixes each round left about 500 KB.
    for what in ("state", "dataset", "key_bytes"):
        assert statistics.median(f[what] for f in later) - first[what] <= STATE_BOUND, (what, later, first)
        for n, f in enumerate(later, 2):
            assert f[what] - first[what] <= 4 * STATE_BOUND, (what, n, f, first)
    for n, f in enumerate(later, 2):
        assert f["used"] - first["used"] <= USED_BOUND, (n, f, first)
        assert f["keys"] <= first["keys"] + 6, (n, f, first)  # at most a new minute's three counters, twice
