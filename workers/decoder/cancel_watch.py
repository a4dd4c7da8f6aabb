"""Notices cancelled responses for every job of a decoder process, with one Redis call per tick.

The gateway marks a response cancelled in Redis (`shared/response_state.py`). Each relay thread
used to read its own flag every 100 ms: a round trip per running response, ten times a second,
and a thread waking on cores llama.cpp was computing on. This thread asks for all of them in one
MGET per tick, and sleeps while no job runs.
"""

from __future__ import annotations

import logging
import threading

import redis

from shared.response_state import ResponseStore
from workers.decoder.engine import Job

log = logging.getLogger(__name__)

TICK_S = 0.1


class CancelWatch:
    def __init__(self, store: ResponseStore, tick_s: float = TICK_S) -> None:
        self._store = store
        self._tick_s = tick_s
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._busy = threading.Event()  # set while any job is watched
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, response_id: str, job: Job) -> None:
        with self._lock:
            self._jobs[response_id] = job
            self._busy.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cancel-watch", daemon=True)
                self._thread.start()

    def unwatch(self, response_id: str) -> None:
        with self._lock:
            self._jobs.pop(response_id, None)
            if not self._jobs:
                self._busy.clear()

    def stop(self) -> None:
        self._stopping.set()
        self._busy.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._busy.wait()
            self._stopping.wait(self._tick_s)
            with self._lock:
                watched = list(self._jobs.items())
            if not watched:
                continue
            try:
                reasons = self._store.cancel_reasons([rid for rid, _ in watched])
            except redis.RedisError as exc:  # the relay's lease renewal notices a lost Redis
                log.debug("could not read cancel flags: %s", exc)
                continue
            for (_, job), reason in zip(watched, reasons, strict=True):
                if reason is not None and not job.cancelled.is_set():
                    job.cancel_reason = reason
                    job.cancelled.set()
