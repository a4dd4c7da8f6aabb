"""The response state machine's scripts, against a real Redis."""

import asyncio

import redis
import redis.asyncio as aioredis

from shared.keys import Keys
from shared.messages import ResponseFinal, TokenDelta
from shared.response_state import AsyncResponseStore, Relayed, ResponseStore, Update

KEYS = Keys("statetest")


def _stores(url: str) -> tuple[ResponseStore, AsyncResponseStore, redis.Redis, aioredis.Redis]:
    sync_client = redis.Redis.from_url(url)
    async_client = aioredis.Redis.from_url(url)
    return (
        ResponseStore(sync_client, KEYS, lease_ms=300, ttl_s=60),
        AsyncResponseStore(async_client, KEYS, ttl_s=60),
        sync_client,
        async_client,
    )


async def test_claim_stream_finish_and_redelivery_is_harmless(fresh_redis_url):
    worker, gateway, _, aclient = _stores(fresh_redis_url)
    await gateway.create("r1", "s1")
    assert worker.claim("r1", "w1", 3) == "ok"
    assert worker.claim("r1", "w2", 3) == "busy"  # a redelivered copy while w1 works
    assert worker.append("r1", "w1", [TokenDelta(text="Hi", token_ids=[7])])
    assert not worker.append("r1", "w2", [TokenDelta(text="X", token_ids=[8])])  # not the owner
    assert worker.finish("r1", "w1", ResponseFinal(status="completed"))
    assert worker.claim("r1", "w2", 3) == "final"  # redelivered after the end: nothing to do
    events = [e for _, e in await gateway.read("r1", "0-0", 10)]
    assert [type(e).__name__ for e in events] == ["TokenDelta", "ResponseFinal"]
    assert worker.generated_so_far("r1") == ([7], "Hi")
    await aclient.aclose()


async def test_dead_worker_is_requeued_and_the_next_attempt_continues(fresh_redis_url):
    worker, gateway, _, aclient = _stores(fresh_redis_url)
    await gateway.create("r2", "s1")
    assert worker.claim("r2", "w1", 3) == "ok"
    worker.append("r2", "w1", [TokenDelta(text="1, 2,", token_ids=[16, 11, 17, 11])])
    assert not await gateway.requeue_if_abandoned("r2")  # lease still alive
    await asyncio.sleep(0.4)  # w1 died: its lease (300 ms) expires
    assert await gateway.requeue_if_abandoned("r2")
    assert worker.claim("r2", "w2", 3) == "ok"
    assert worker.generated_so_far("r2")[0] == [16, 11, 17, 11]
    assert not worker.finish("r2", "w1", ResponseFinal(status="completed"))  # the dead owner cannot finish
    assert worker.finish("r2", "w2", ResponseFinal(status="completed"))
    await aclient.aclose()


async def test_attempts_are_bounded(fresh_redis_url):
    worker, gateway, _, aclient = _stores(fresh_redis_url)
    await gateway.create("r3", "s1")
    for attempt in range(2):
        assert worker.claim("r3", f"w{attempt}", 2) == "ok"
        await asyncio.sleep(0.4)
        assert await gateway.requeue_if_abandoned("r3")
    assert worker.claim("r3", "w9", 2) == "exhausted"
    final = [e for _, e in await gateway.read("r3", "0-0", 10)][-1]
    assert isinstance(final, ResponseFinal) and final.status == "failed"
    await aclient.aclose()


async def test_cancel_while_queued_ends_at_once_and_only_once(fresh_redis_url):
    worker, gateway, _, aclient = _stores(fresh_redis_url)
    await gateway.create("r4", "s1")
    await gateway.request_cancel("r4", "client_cancelled")
    assert await gateway.finish_unclaimed("r4", ResponseFinal(status="cancelled"))
    assert not await gateway.finish_unclaimed("r4", ResponseFinal(status="cancelled"))
    assert worker.claim("r4", "w1", 3) == "final"
    await aclient.aclose()


async def test_running_response_is_not_finished_as_unclaimed(fresh_redis_url):
    worker, gateway, _, aclient = _stores(fresh_redis_url)
    await gateway.create("r5", "s1")
    assert worker.claim("r5", "w1", 3) == "ok"
    assert not await gateway.finish_unclaimed("r5", ResponseFinal(status="cancelled"))
    assert worker.cancel_reason("r5") is None
    await gateway.request_cancel("r5", "turn_detected")
    assert worker.cancel_reason("r5") == "turn_detected"
    await aclient.aclose()


async def test_relay_appends_extends_leases_and_reads_cancel_flags_in_one_call(fresh_redis_url):
    worker, gateway, sync_client, aclient = _stores(fresh_redis_url)
    for rid in ("r7", "r8", "r9"):
        await gateway.create(rid, "s1")
        assert worker.claim(rid, "w1", 3) == "ok"
    await gateway.request_cancel("r8", "turn_detected")
    sync_client.delete(KEYS.response_lease("r9"))  # r9's lease ran out: another worker may own it
    await asyncio.sleep(0.2)
    relayed = worker.relay(
        [
            Update("r7", "w1", [TokenDelta(text="a", token_ids=[1]), TokenDelta(text="b", token_ids=[2])]),
            Update("r8", "w1"),
            Update("r9", "w1", [TokenDelta(text="x", token_ids=[3])]),
        ]
    )
    assert relayed == [Relayed(held=True), Relayed(held=True, cancel_reason="turn_detected"), Relayed(held=False)]
    assert worker.generated_so_far("r7") == ([1, 2], "ab")
    assert worker.generated_so_far("r9") == ([], "")
    await asyncio.sleep(0.2)  # 0.4 s after the claim: only the relayed leases are still alive
    assert await gateway.lease_alive("r7") and await gateway.lease_alive("r8")
    assert worker.relay([]) == []
    await aclient.aclose()
