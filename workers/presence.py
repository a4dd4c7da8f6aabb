"""Worker presence in Redis: one key per worker process, refreshed while its model is loaded.

`/readyz` is ready when every worker kind has at least one live key whose model is loaded. A worker
that cannot start, or its supervisor when it dies, leaves a failure record that `/readyz` shows.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

import redis

from shared import recovery
from shared.keys import Keys

log = logging.getLogger(__name__)

FAILURE_TTL_S = 600


def worker_name(kind: str, pid: int | None = None) -> str:
    """A worker process's default name: kind, host and pid (what its supervisor can rebuild)."""
    return f"{kind}-{socket.gethostname()}-{os.getpid() if pid is None else pid}"


def record_failure(client: redis.Redis, keys: Keys, kind: str, name: str, reason: str) -> None:
    """Say why a worker process could not start or died; kept FAILURE_TTL_S for `/readyz` to show."""
    record = {"kind": kind, "name": name, "reason": reason, "at": time.time()}
    try:
        client.set(keys.worker_failure(kind, name), json.dumps(record), ex=FAILURE_TTL_S)
    except redis.RedisError:
        log.warning("could not record the failure of %s in redis", name)


class Presence:
    def __init__(self, client: redis.Redis, keys: Keys, kind: str, name: str, *, ttl_s: float = 15.0) -> None:
        self._r = client
        self._keys = keys
        self.kind = kind
        self.name = name
        self._key = keys.worker(kind, name)
        self._ttl_ms = int(ttl_s * 1000)
        self._period = ttl_s / 3
        # A worker restarted under the same name is another process: its locks are not this one's.
        self.instance = secrets.token_hex(8)
        self._info: dict[str, Any] = {
            "kind": kind,
            "name": name,
            "pid": os.getpid(),
            "instance": self.instance,
            "loaded": False,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"presence-{kind}", daemon=True)

    def lock_token(self) -> str:
        """A value for a lock this process takes, naming it so others can tell whether it still lives
        (`shared.recovery.holder_alive`); unique per acquisition."""
        return recovery.lock_token(self._key, self.instance, secrets.token_hex(4))

    def start(self) -> None:
        self._thread.start()

    def update(self, **info: Any) -> None:
        self._info.update(info)
        self._publish()

    def note(self, **info: Any) -> None:
        """Change what the record says; the next heartbeat publishes it."""
        self._info.update(info)

    def fail(self, reason: str) -> None:
        """This process cannot do its work: say why, and stop claiming to be a live worker."""
        record_failure(self._r, self._keys, self.kind, self.name, reason)
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._r.delete(self._key)
        except redis.RedisError:
            log.debug("presence key not removed: redis unreachable")

    def _publish(self) -> None:
        self._r.set(self._key, json.dumps({**self._info, "seen": time.time()}), px=self._ttl_ms)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._publish()
            except redis.RedisError as exc:  # Redis restarting: try again next period
                log.warning("presence heartbeat failed: %s", exc)
            self._stop.wait(self._period)
