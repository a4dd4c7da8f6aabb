"""What happens when a worker dies: the one home of lease, presence and grace policy.

Every rule that decides "this worker is gone, redo its work" reads its numbers and checks here:

- **Presence.** A worker process publishes a record that lives `presence_ttl_s` (three leases) and
  is refreshed three times per life (`workers/presence.py` writes it). A lock a worker takes names
  that record (`lock_token`); `holder_alive` says whether the process behind a token still lives, so
  a lock whose holder died may be taken over (the audio stream lock, `take_lock`) instead of waiting
  for it to expire.
- **Leases.** A worker running a job renews its lease every second; a job whose lease lapsed for
  `lease_ttl_s` goes back to the queue and the gateway following it sends its task again
  (`shared/clients.py`; the transitions are `shared/response_state.py`'s scripts).
- **Lost tasks.** A task that a worker took off its queue and died with (or froze with) comes back
  from a Redis broker only after the visibility timeout, minutes later. Whoever sent the task (the
  gateway: jobs in `shared/clients.py`, media in `shared/media_tasks.py`) sends it again once the
  work has not started after `lost_after_s` and the task's queue is empty (`queued`, through kombu's
  public API, so the same check works on any broker). A copy is harmless: jobs are claimed
  atomically, and workers skip media already described.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

import redis
from celery import Celery

from shared.config import Settings
from shared.redis_text import text

# A worker process announces itself within seconds of starting: a job waiting longer than this
# while no worker of its kind exists fails at once instead of after the queue timeout.
ABSENT_GRACE_S: Final = 5.0
# Marks the one `audio.stream` task a session may have waiting; long enough to cover a queue wait
# (the worker deletes it as soon as it starts).
AUDIO_PENDING_TTL_S: Final = 60


def presence_ttl_s(settings: Settings) -> float:
    """How long a worker's presence record outlives its last heartbeat: three leases."""
    return 3 * settings.lease_ttl_s


def lost_after_s(settings: Settings) -> float:
    """How long sent work may go unstarted, its queue empty, before its task counts as lost.

    Longer than a dead holder's presence takes to lapse, so that the copy finds the work free.
    """
    return max(10.0, 4 * settings.lease_ttl_s)


def queued(app: Celery, queue: str) -> int:
    """The messages waiting in a queue, all priorities together (blocking: run it in a thread).

    A passive declare is kombu's broker-neutral way to count them; a queue that does not exist
    (Redis drops an empty list) holds none.
    """
    with app.connection_for_read() as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except conn.channel_errors:
            return 0
        finally:
            channel.close()


# --- presence-backed locks ------------------------------------------------------------------------


def lock_token(presence_key: str, instance: str, nonce: str) -> str:
    """A lock value naming the worker process that holds it (its presence key and instance)."""
    return f"{presence_key}|{instance}|{nonce}"


def _holder(token: str | bytes) -> tuple[str, str]:
    key, _, rest = text(token).partition("|")
    return key, rest.partition("|")[0]


def _alive(record: Any, instance: str) -> bool:
    if record is None:
        return False  # a killed worker's record lapsed
    try:
        return bool(json.loads(record).get("instance") == instance)  # else: restarted, another process
    except ValueError:
        return False


def holder_alive(client: redis.Redis, token: str | bytes) -> bool:
    """Whether the process that wrote this lock token still publishes its presence."""
    key, instance = _holder(token)
    return _alive(client.get(key) if key else None, instance)


_SWAP = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


Taken = Literal["taken", "taken_over", "held"]


class Lock:
    """A short lock with a `lock_token` value: taken over from a holder whose process is gone."""

    def __init__(self, client: redis.Redis, ttl_ms: int) -> None:
        self._r = client
        self._ttl_ms = ttl_ms
        self._swap = client.register_script(_SWAP)
        self._release = client.register_script(_RELEASE)

    def take(self, key: str, token: str) -> Taken:
        """Take the lock, or take it over from a holder whose process is gone."""
        if self._r.set(key, token, nx=True, px=self._ttl_ms):
            return "taken"
        held: Any = self._r.get(key)
        if held is None:
            return "taken" if self._r.set(key, token, nx=True, px=self._ttl_ms) else "held"
        if holder_alive(self._r, held):
            return "held"
        return "taken_over" if self._swap(keys=[key], args=[text(held), token, self._ttl_ms]) else "held"

    def release(self, key: str, token: str) -> None:
        self._release(keys=[key], args=[token])
