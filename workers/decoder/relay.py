"""Forwards every running job's events to Redis from one thread: one round trip per engine call.

A decode call yields a token for many responses at once. The engine wakes this thread once per
call (`Engine(on_events=...)`), and one script call (`ResponseStore.relay`) appends every
response's new tokens, extends its lease and reads its cancel flag. With a thread per response,
16 responses meant 16 threads waking on the cores llama.cpp computes on, and 16 round trips, for
each token. While jobs run, the flags and leases are also checked every `tick_s` when no tokens
come (a long prompt being read).

A task thread hands its job over with `follow` and sleeps until the job is done, let go (lease
lost, worker stopping) or cancelled; it then finishes the response itself.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import redis

from shared.errors import ErrorCode
from shared.messages import ResponseFinal, StreamEvent, TokenDelta, TokenUsage
from shared.metrics import DECODER_FIRST_TOKEN, DECODER_TOKENS, DECODER_TOKENS_PER_S
from shared.response_state import ResponseStore, Update
from workers.decoder.engine import Done, EngineEvent, Job, Token

log = logging.getLogger(__name__)

TICK_S = 0.1


@dataclass(eq=False)
class _Followed:
    response_id: str
    owner: str
    job: Job
    unsent: list[StreamEvent] = field(default_factory=list)  # kept while Redis cannot be reached
    done: Done | None = None
    result: ResponseFinal | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.perf_counter)
    first_at: float = 0.0
    tokens: int = 0


class Relay:
    def __init__(
        self, store: ResponseStore, stopping: threading.Event, *, lease_s: float, tick_s: float = TICK_S
    ) -> None:
        self._store = store
        self._stopping = stopping  # the worker's: running responses are released for another worker
        self._lease_s = lease_s
        self._tick_s = tick_s
        self._unreachable_since: float | None = None
        self._followed: dict[str, _Followed] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decoder-relay", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New events are in some job's queue (the engine's `on_events`)."""
        self._wake.set()

    def follow(self, response_id: str, owner: str, job: Job) -> ResponseFinal | None:
        """Forward the job's events until it is done: its final event, or None when let go."""
        followed = _Followed(response_id, owner, job)
        with self._lock:
            self._followed[response_id] = followed
        self._wake.set()
        followed.ended.wait()
        return followed.result

    def stop(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            with self._lock:
                idle = not self._followed
            self._wake.wait(None if idle else self._tick_s)
            self._wake.clear()
            with self._lock:
                followed = list(self._followed.values())
            if not followed:
                continue
            try:
                self._flush(followed)
                self._unreachable_since = None
            except redis.RedisError as exc:  # events stay unsent and are sent once Redis is back
                log.warning("could not reach Redis to relay %d responses: %s", len(followed), exc)
                self._unreachable_since = self._unreachable_since or time.monotonic()
                if time.monotonic() - self._unreachable_since > self._lease_s:
                    for f in followed:  # their leases have run out: the gateway gives them to another worker
                        self._let_go(f)
                time.sleep(self._tick_s)
            except Exception:
                log.exception("relay failed")
                time.sleep(self._tick_s)

    def _flush(self, followed: list[_Followed]) -> None:
        for f in followed:
            self._take(f)
        relayed = self._store.relay([Update(f.response_id, f.owner, f.unsent) for f in followed])
        for f, r in zip(followed, relayed, strict=True):
            f.unsent = []
            if not r.held:
                log.warning("response %s: lease lost; another worker owns it now", f.response_id)
                self._let_go(f)
            elif self._stopping.is_set() and (f.done is None or f.done.reason == "shutdown"):
                self._store.release(f.response_id, f.owner)  # another worker continues after what was streamed
                self._let_go(f)
            elif f.done is not None:
                if f.tokens > 1 and (spent := time.perf_counter() - f.first_at) > 0:
                    DECODER_TOKENS_PER_S.observe((f.tokens - 1) / spent)
                self._end(f, _final(f.done))
            elif r.cancel_reason is not None and not f.job.cancelled.is_set():
                f.job.cancel_reason = r.cancel_reason
                f.job.cancelled.set()  # the engine ends the job; its Done comes on a later flush

    def _take(self, f: _Followed) -> None:
        """Move what the engine has put in the job's queue into `f.unsent`, as one delta."""
        text: list[str] = []
        ids: list[int] = []
        while f.done is None:
            try:
                event: EngineEvent = f.job.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, Token):
                text.append(event.text)
                if event.id >= 0:
                    ids.append(event.id)
            else:
                f.done = event
        if not text:
            return
        f.unsent.append(TokenDelta(text="".join(text), token_ids=ids))
        if f.tokens == 0:
            f.first_at = time.perf_counter()
            DECODER_FIRST_TOKEN.observe(f.first_at - f.submitted)
        f.tokens += len(ids)
        DECODER_TOKENS.inc(len(ids))

    def _let_go(self, f: _Followed) -> None:
        """Stop the job without finishing the response: its new owner (or the gateway) does that."""
        f.job.cancelled.set()
        self._end(f, None)

    def _end(self, f: _Followed, result: ResponseFinal | None) -> None:
        with self._lock:
            self._followed.pop(f.response_id, None)
        f.result = result
        f.ended.set()


def _final(done: Done) -> ResponseFinal:
    usage = TokenUsage(
        input_tokens=done.prompt_tokens, output_tokens=done.output_tokens, cached_tokens=done.cached_tokens
    )
    if done.status == "failed":
        code: ErrorCode = "timeout" if done.reason == "time_limit" else "server_error"
        return ResponseFinal(
            status="failed",
            reason=done.reason,
            error_code=code,
            error_message=f"Generation failed: {done.error or 'unknown error'}.",
            usage=usage,
        )
    return ResponseFinal(status=done.status, reason=done.reason, usage=usage)
