"""The decoder's relay against a real Redis: one thread forwards every job's events, extends leases,
passes cancel flags on and lets go of responses it no longer owns. The engine's side is played by
putting events in the jobs' queues, as the engine does."""

import threading
import time

import redis

from shared.keys import Keys
from shared.messages import ResponseFinal
from shared.response_state import ResponseStore, decode_event
from shared.streams import read_all
from workers.decoder.engine import Done, Job, Token
from workers.decoder.relay import Relay

KEYS = Keys("relaytest")


def _job() -> Job:
    return Job(prompt=[1], max_new_tokens=8, temperature=0.0, top_p=1.0, seed=0, deadline=time.monotonic() + 60)


def _claimed(client: redis.Redis, store: ResponseStore, rid: str) -> None:
    client.hset(KEYS.response(rid), mapping={"status": "queued", "attempt": 0})
    assert store.claim(rid, "w1", 3) == "ok"


class _Following(threading.Thread):
    def __init__(self, relay: Relay, rid: str, job: Job) -> None:
        super().__init__(daemon=True)
        self.relay, self.rid, self.job = relay, rid, job
        self.result: ResponseFinal | None = None

    def run(self) -> None:
        self.result = self.relay.follow(self.rid, "w1", self.job)


def test_tokens_of_many_jobs_reach_their_streams_and_each_task_gets_its_final(fresh_redis_url):
    client = redis.Redis.from_url(fresh_redis_url)
    store = ResponseStore(client, KEYS, lease_ms=2000, ttl_s=60)
    relay = Relay(store, threading.Event(), lease_s=2.0)
    jobs = {rid: _job() for rid in ("a", "b")}
    threads = []
    for rid, job in jobs.items():
        _claimed(client, store, rid)
        threads.append(_Following(relay, rid, job))
        threads[-1].start()
    for i, text in enumerate(["Hel", "lo"]):
        for job in jobs.values():
            job.events.put(Token(10 + i, text))
        relay.wake()
        time.sleep(0.05)
    jobs["a"].events.put(Done("completed", output_tokens=2))
    jobs["b"].events.put(Token(-1, "!"))
    jobs["b"].events.put(Done("incomplete", reason="max_output_tokens", output_tokens=2))
    relay.wake()
    for t in threads:
        t.join(timeout=5)
    assert [t.result.status for t in threads if t.result] == ["completed", "incomplete"]
    assert store.generated_so_far("a") == ([10, 11], "Hello")
    assert store.generated_so_far("b") == ([10, 11], "Hello!")
    assert len(read_all(client, KEYS.response_events("a"))) <= 2  # one entry per flush, not per token


def test_a_cancel_flag_reaches_the_job_and_a_lost_lease_lets_it_go(fresh_redis_url):
    client = redis.Redis.from_url(fresh_redis_url)
    store = ResponseStore(client, KEYS, lease_ms=2000, ttl_s=60)
    relay = Relay(store, threading.Event(), lease_s=2.0, tick_s=0.05)
    cancelled, lost = _job(), _job()
    _claimed(client, store, "c")
    _claimed(client, store, "l")
    following = [_Following(relay, "c", cancelled), _Following(relay, "l", lost)]
    for t in following:
        t.start()
    client.set(KEYS.response_cancel("c"), "client_cancelled")
    client.delete(KEYS.response_lease("l"))
    assert cancelled.cancelled.wait(2) and cancelled.cancel_reason == "client_cancelled"
    assert lost.cancelled.wait(2)
    following[1].join(timeout=2)
    assert not following[1].is_alive() and following[1].result is None
    cancelled.events.put(Done("cancelled", reason="client_cancelled"))  # what the engine then does
    relay.wake()
    following[0].join(timeout=2)
    assert following[0].result is not None and following[0].result.status == "cancelled"
    entries = read_all(client, KEYS.response_events("c"))
    assert not any(isinstance(decode_event(raw), ResponseFinal) for _, raw in entries)  # the task finishes it
