"""The decoding engine: one thread owns the model and steps every active sequence together.

Callers hand it `Job`s and read `Token`/`Done` events from the job's queue. Each step evaluates
one token for each sequence that is generating and every waiting prompt (up to a batch), in a few
decode calls, shortest prompt first, sampling after each: newcomers arriving together get their
first tokens in turn rather than all after the last prompt is read (`_step`). New jobs join between steps,
finished ones leave, and each job samples with its own settings in its own slice of the KV cache.
A slot keeps its cache after a job ends, so the next turn of the same conversation only evaluates
what is new.

A prompt whose beginning another sequence holds (or is reading right now: a persona many sessions
share, arriving together) is not evaluated again: the newcomer waits for that sequence to have read
the shared prefix, takes a copy of its cache and evaluates only the rest. A conversation's cache is
copied rather than overwritten when another slot is free, and new sequences take the lowest free
slot, so that running sequences sit side by side in the cache (see `_place`).

Background jobs (batch work) step only while no interactive job is active: a person's request
waits at most one step for them, and their prompts are read in smaller chunks to keep that step short.
Time spent paused does not count against a background job's deadline.

A prompt may hold soft tokens: negative ids standing for vectors in `Job.vectors` (projected
picture or speech embeddings). llama.cpp takes either ids or vectors in one batch, so a sequence
reads a run of one kind per step, and vectors are evaluated in their own decode call. A picture
the model attends both ways over (`Job.both_ways`: Gemma 3) is read whole, in a call of its own
with causal attention off. A soft token's id is derived from its vector, so the prefix cache
treats the same picture as the same input on the next turn.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from shared.metrics import DECODER_ENGINE_CPU
from workers.decoder.grammar import Grammar
from workers.decoder.host_cache import HostCache, common_prefix
from workers.decoder.llama import DecodeError, LlamaModel, Sampler, TextStream

log = logging.getLogger(__name__)

# Prompt tokens a background sequence reads per step: a newcomer with a person waiting pays for
# at most one such step before its own prompt is read.
_BACKGROUND_CHUNK = 64
# The OS name of the engine thread; llama.cpp's compute threads, started from it, inherit it, so
# per-thread CPU (top -H, /proc/<pid>/task) tells the model's work from the rest of the worker.
THREAD_NAME = "mm-engine"
# The shortest prefix worth waiting for while another sequence reads it (a step or two), and worth
# keeping in or loading from host memory.
MIN_SHARED_PREFIX = 32
# The shortest prefix worth copying from a sequence that already holds it: the copy is bookkeeping in
# a unified cache, a memory copy of one cache stream (tens of MB, milliseconds) otherwise, where 8
# tokens cost a CPU 0.1-0.3 s to read.
MIN_HELD_PREFIX = 8
# A step's prompt reading is split over at most this many decode calls, each of at least this many
# prompt tokens: the sequences of the first call are sampled while the rest is still being read.
# Each call reads the weights again: with a unified cache, 8 prompts (140 tokens) in one call got
# the same median first token as in four, and all of them 1.5x sooner.
_MAX_CALLS = 4
_MIN_CALL_TOKENS = 128
# The longest the first arrival after an idle spell waits for others to arrive (see `Engine`).
_GATHER_MAX_S = 0.05

DoneStatus = Literal["completed", "cancelled", "incomplete", "failed"]


@dataclass(frozen=True)
class Token:
    id: int
    text: str


@dataclass(frozen=True)
class Done:
    status: DoneStatus
    reason: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None


EngineEvent = Token | Done


@dataclass
class Job:
    """One response to generate: the prompt, tokens an earlier attempt produced, and limits."""

    prompt: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    deadline: float  # time.monotonic() value
    background: bool = False  # batch work: steps only while no interactive job is active
    resume: list[int] = field(default_factory=list)
    vectors: dict[int, npt.NDArray[np.float32]] = field(default_factory=dict)  # soft token id -> vector
    both_ways: frozenset[int] = frozenset()  # soft tokens read whole, attending both ways
    grammar: Grammar | None = None  # what the reply must follow (structured output, tool calls)
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancel_reason: str = "client_cancelled"
    events: queue.SimpleQueue[EngineEvent] = field(default_factory=queue.SimpleQueue)


@dataclass
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds
    job: Job | None = None
    pending: list[int] = field(default_factory=list)  # tokens still to evaluate
    sampler: Sampler | None = None
    text: TextStream = field(default_factory=TextStream)
    generated: int = 0
    cached_at_start: int = 0
    waiting_on: tuple[_Slot, int] | None = None  # (sequence reading our prefix, its length)

    def known(self) -> list[int]:
        """What this sequence holds, or will once it has read its prompt."""
        return self.cached + self.pending if len(self.pending) > 1 else self.cached


class Engine:
    """`host_cache_bytes`: host memory for conversations' caches that lost their slot (`HostCache`;
    0: none). `gather_s`: after an idle spell, how long the first arrival waits for the next one (each
    arrival restarts the wait, up to `_GATHER_MAX_S` in all) before the first step. Requests that
    many clients send at once reach the worker a few milliseconds apart, one Celery task each;
    without the wait the first would take a step alone and the rest would wait for all of it.
    `on_events`: called after a decode call's (or a loop turn's) events are in the jobs' queues,
    once for all of them, so that one reader can forward them together."""

    def __init__(
        self,
        model: LlamaModel,
        *,
        gather_s: float = 0.0,
        host_cache_bytes: int = 0,
        on_events: Callable[[], None] | None = None,
    ) -> None:
        self._model = model
        self._on_events = on_events
        self._emitted = False  # events were put since `on_events` was last called
        self._gather_s = gather_s
        self._host = HostCache(host_cache_bytes) if host_cache_bytes > 0 else None
        self._slots = [_Slot(seq) for seq in range(model.n_seq)]
        self._inbox: queue.Queue[Job | None] = queue.Queue()
        self._stopping = threading.Event()
        self._in_decode = 0.0  # this thread's CPU seconds in llama_decode since the last account
        self._cpu_mark = 0.0
        self._thread = threading.Thread(target=self._run, name="decoder-engine", daemon=True)
        self._thread.start()

    @property
    def model(self) -> LlamaModel:
        return self._model

    def submit(self, job: Job) -> None:
        self._inbox.put(job)

    def stop(self) -> None:
        self._stopping.set()
        self._inbox.put(None)
        self._thread.join(timeout=10)

    # --- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        _name_os_thread(THREAD_NAME)
        self._cpu_mark = time.thread_time()
        while not self._stopping.is_set():
            self._admit()
            active = [s for s in self._slots if s.job is not None]
            self._notify()
            if not active:
                self._wait_for_job()
                continue
            self._enforce_limits(active)
            self._end_waits()
            active = [s for s in active if s.job is not None and s.waiting_on is None]
            foreground = [s for s in active if s.job is not None and not s.job.background]
            stepping = foreground or active
            if not stepping:  # only sequences waiting for a copy (not expected: their sources step)
                time.sleep(0.001)
                continue
            started = time.monotonic()
            try:
                self._step(stepping, chunk=self._model.n_batch if foreground else _BACKGROUND_CHUNK)
            except Exception as exc:  # keep serving: fail the jobs in this step, drop their cache
                log.exception("decode step failed")
                for slot in stepping:
                    if slot.job is not None:
                        self._finish(slot, Done("failed", error=type(exc).__name__), drop_cache=True)
            if foreground:
                self._postpone_paused(active, time.monotonic() - started)
            self._account_cpu()
        for slot in self._slots:
            if slot.job is not None:
                self._finish(slot, Done("failed", reason="shutdown", error="worker shutting down"))
        self._notify()

    def _account_cpu(self) -> None:
        now = time.thread_time()
        spent, self._cpu_mark = now - self._cpu_mark, now
        DECODER_ENGINE_CPU.labels("decode").inc(self._in_decode)
        DECODER_ENGINE_CPU.labels("other").inc(max(spent - self._in_decode, 0.0))
        self._in_decode = 0.0

    def _wait_for_job(self) -> None:
        job = self._inbox.get()  # every slot is free: nothing runs
        until = time.monotonic() + _GATHER_MAX_S
        while job is not None:
            self._start(job)
            wait = min(self._gather_s, until - time.monotonic())
            if not any(s.job is None for s in self._slots) or wait <= 0:
                break
            try:
                job = self._inbox.get(timeout=wait)
            except queue.Empty:
                break
        if job is not None:  # (None: stop() was called)
            self._admit()  # and whatever else arrived, in arrival order

    def _admit(self) -> None:
        while any(s.job is None for s in self._slots):
            try:
                job = self._inbox.get_nowait()
            except queue.Empty:
                return
            if job is None:
                return
            self._start(job)

    def _start(self, job: Job) -> None:
        tokens = job.prompt + job.resume
        if len(tokens) + 1 >= self._model.n_ctx_per_seq:
            self._emit(job, Done("incomplete", reason="context_length_exceeded", prompt_tokens=len(job.prompt)))
            return
        slot, source, shared = self._place(tokens, job.background)
        self._save(slot, common_prefix(slot.cached, tokens))
        if self._restore(slot, tokens, max(common_prefix(slot.cached, tokens), shared)):
            source = None
        # Keep at least one token to evaluate: its logits choose the first new token.
        keep = min(common_prefix(slot.cached, tokens), len(tokens) - 1)
        self._model.forget(slot.seq, keep)
        slot.cached = slot.cached[:keep]
        slot.pending = tokens[keep:]
        slot.job = job
        slot.sampler = self._model.new_sampler(job.temperature, job.top_p, job.seed, job.grammar)
        for token in job.resume:  # a grammar goes on from where the earlier attempt stopped
            slot.sampler.accept(token)
        slot.text = TextStream()
        slot.generated = 0
        slot.cached_at_start = keep
        if source is None:
            return
        # Wait for a sequence to read a long shared prefix; copy a shorter one it already holds.
        shared = min(shared, len(tokens) - 1)
        held = min(common_prefix(source.cached, tokens), shared)
        if shared < keep + MIN_SHARED_PREFIX:
            shared = held if held >= keep + MIN_HELD_PREFIX else 0
        if shared:
            slot.waiting_on = (source, shared)
            self._end_waits()  # at once when the source has already read it

    def _save(self, slot: _Slot, keep: int) -> None:
        """Save a free slot's conversation to host memory before a new prompt overwrites it."""
        if self._host is not None and len(slot.cached) - keep >= MIN_SHARED_PREFIX:
            self._host.put(slot.cached, self._model.save(slot.seq))

    def _restore(self, slot: _Slot, tokens: list[int], have: int) -> bool:
        """Load into `slot` the saved state that shares the longest prefix with `tokens`, when that
        is at least `MIN_SHARED_PREFIX` tokens more than the `have` the slots offer."""
        found = self._host.best(tokens) if self._host is not None else None
        if found is None or found[1] < have + MIN_SHARED_PREFIX:
            return False
        if self._model.restore(slot.seq, found[0].state):
            slot.cached = list(found[0].tokens)
            return True
        log.warning("a saved cache did not fit its slot; reading the prompt instead")
        self._model.forget(slot.seq)
        slot.cached = []
        return False

    def _place(self, tokens: list[int], background: bool) -> tuple[_Slot, _Slot | None, int]:
        """The free slot for a prompt, and the sequence (if any) to copy a longer prefix from.

        A free slot holding a prefix worth keeping is reused; otherwise the lowest free slot is
        taken. Running sequences then sit side by side: llama.cpp's attention spans every cache
        stream from the lowest running one to the highest, so four sequences spread over sixteen
        slots cost four times the attention of four neighbours. A free slot's conversation is
        copied from, not overwritten, when only a small part of it is wanted; so is a longer prefix
        that a busy sequence holds or is reading, and a short one (a system line) held anywhere.
        """
        free = [s for s in self._slots if s.job is None]  # in slot order
        best = max(free, key=lambda s: common_prefix(s.cached, tokens))  # the lowest among equals
        own = common_prefix(best.cached, tokens)
        spare = next((s for s in free if s is not best), None)
        source, shared = None, 0
        if own < MIN_SHARED_PREFIX:
            slot = free[0]
            if slot is not best:  # a short prefix (a system line) another free slot holds
                source, shared = best, own
        elif 2 * own < len(best.cached) and spare is not None:
            # Reading this prompt there would overwrite most of a conversation: keep it for its
            # next turn, and copy the part wanted.
            slot, source, shared = spare, best, own
        else:
            slot = best
        for other in self._slots:
            if other.job is None or other.waiting_on is not None:
                continue  # (never wait on a waiting sequence: no waits in a circle)
            if other.job.background and not background:
                continue  # a paused batch sequence would keep a person waiting
            n = common_prefix(other.known(), tokens)
            if n > shared:
                source, shared = other, n
        return slot, source, shared

    def _end_waits(self) -> None:
        """Copy the prefix into each waiting sequence whose source has read it; a sequence whose
        source went another way reads the prompt itself."""
        for slot in self._slots:
            if slot.waiting_on is None or slot.job is None:
                slot.waiting_on = None
                continue
            source, n = slot.waiting_on
            tokens = slot.cached + slot.pending
            if len(source.cached) >= n and source.cached[:n] == tokens[:n]:
                self._model.share(source.seq, slot.seq, n)
                slot.cached, slot.pending = tokens[:n], tokens[n:]
                slot.cached_at_start = n
                slot.waiting_on = None
            elif source.job is None or common_prefix(source.known(), tokens) < n:
                slot.waiting_on = None

    def _enforce_limits(self, active: list[_Slot]) -> None:
        now = time.monotonic()
        for slot in active:
            job = slot.job
            assert job is not None
            if job.cancelled.is_set():
                self._finish(slot, self._done(slot, "cancelled", job.cancel_reason))
            elif now > job.deadline:
                self._finish(slot, self._done(slot, "failed", "time_limit", error="time limit reached"))

    @staticmethod
    def _postpone_paused(active: list[_Slot], seconds: float) -> None:
        for slot in active:
            if slot.job is not None and slot.job.background:
                slot.job.deadline += seconds

    def _step(self, active: list[_Slot], chunk: int) -> None:
        """Evaluate one step across sequences, then sample for each that finished its input.

        Every waiting prompt is read in this step, up to `chunk` prompt tokens (plus one per
        generating sequence), as llama-server does: fewer, larger steps make the most tokens/s.
        Token ids go in up to `_MAX_CALLS` llama_decode calls, the generating sequences and the
        shortest prompts first, and each call's sequences are sampled right after it: newcomers
        arriving together get their first tokens in turn instead of all after the last prompt is
        read, at no cost in throughput (a call computes at most `n_ubatch` tokens at once anyway).
        Jobs that arrive during the step join its remaining calls (`_join`). Soft tokens (vectors)
        go in a decode call of their own, made first. Each sequence contributes one run of a
        single kind, so its inputs stay in order.
        """
        generating = [s for s in active if len(s.pending) == 1]
        # Shortest prompt first: the most sequences reach their first token soonest.
        prompting = sorted((s for s in active if len(s.pending) > 1), key=lambda s: len(s.pending))
        budget = min(chunk, self._model.n_batch) - len(generating)
        reading = _take(prompting, budget)
        budget -= sum(len(take) for _, take in reading)
        runs = [(slot, slot.pending[:1]) for slot in generating] + reading
        stepping = list(active)
        try:
            # Vectors first: sampling reads the logits of the latest decode call.
            soft = [(slot, take) for slot, take in runs if take[0] < 0]
            causal = [run for run in soft if not _both_ways(*run)]
            if causal:
                self._decode(causal, vectors=True)
            for run in soft:
                if _both_ways(*run):  # one picture a call: the mask then spans that picture alone
                    self._decode([run], vectors=True, causal=False)
            ids = [(slot, take) for slot, take in runs if take[0] >= 0]
            calls = _calls(ids, len(generating))
            while calls:
                self._decode(calls.pop(0), vectors=False)
                if chunk < self._model.n_batch or budget <= 0 or self._inbox.empty():
                    continue
                # Requests sent together reach the worker some milliseconds apart: those that came
                # during this call are read in this step's next calls, not after all of it.
                joined = self._join(budget)
                budget -= sum(len(take) for _, take in joined)
                stepping += [slot for slot, _ in joined]
                waiting = [run for call in calls for run in call] + joined
                calls = _calls(sorted(waiting, key=lambda run: len(run[0].pending)), 0)
        except DecodeError:
            for slot in stepping:
                if slot.job is not None:
                    self._finish(slot, self._done(slot, "failed", error="no room in the KV cache"), drop_cache=True)

    def _join(self, budget: int) -> list[tuple[_Slot, list[int]]]:
        """Start the jobs that arrived during a step; the prompt runs of the interactive ones that
        can be read at once (token ids, not waiting for a copy), within `budget` tokens."""
        idle = [slot for slot in self._slots if slot.job is None]
        self._admit()
        ready = [
            s for s in idle if s.job is not None and not s.job.background and s.waiting_on is None and s.pending[0] >= 0
        ]
        return _take(sorted(ready, key=lambda s: len(s.pending)), budget)

    def _decode(self, runs: list[tuple[_Slot, list[int]]], *, vectors: bool, causal: bool = True) -> None:
        """Evaluate each sequence's run in one decode call, then sample for those it completes."""
        tokens: list[tuple[int, int, int, bool]] = []
        entries: list[tuple[int, int, bool]] = []
        rows: list[npt.NDArray[np.float32]] = []
        sampled: list[tuple[_Slot, int]] = []
        # In sequence order: with a cache stream per sequence (not a unified cache), llama.cpp
        # computes a call in micro-batches that each take a run of consecutive sequence ids (the
        # same number of tokens from each), and starts a new one at every break in that order.
        for slot, take in sorted(runs, key=lambda run: run[0].seq):
            assert slot.job is not None
            pos = len(slot.cached)
            completes = len(take) == len(slot.pending)
            for i, token in enumerate(take):
                last = completes and i == len(take) - 1
                if vectors:
                    entries.append((pos + i, slot.seq, last))
                    rows.append(slot.job.vectors[token])
                else:
                    tokens.append((token, pos + i, slot.seq, last))
            if completes:
                sampled.append((slot, len(entries if vectors else tokens) - 1))
            slot.cached.extend(take)
            slot.pending = slot.pending[len(take) :]
        started = time.thread_time()
        if vectors:
            self._model.decode_vectors(np.stack(rows), entries, causal=causal)
        else:
            self._model.decode(tokens)
        self._in_decode += time.thread_time() - started
        self._sample(sampled)
        self._notify()

    def _emit(self, job: Job, event: EngineEvent) -> None:
        job.events.put(event)
        self._emitted = True

    def _notify(self) -> None:
        if self._emitted and self._on_events is not None:
            self._on_events()
        self._emitted = False

    def _sample(self, sampled: list[tuple[_Slot, int]]) -> None:
        for slot, index in sampled:
            assert slot.sampler is not None
            self._after_sample(slot, slot.sampler.sample(index))

    def _after_sample(self, slot: _Slot, token: int) -> None:
        job = slot.job
        assert job is not None
        if self._model.is_eog(token):
            self._finish(slot, self._done(slot, "completed"))
            return
        slot.generated += 1
        text = slot.text.push(self._model.piece(token))
        self._emit(job, Token(token, text))
        if slot.generated >= job.max_new_tokens:
            self._finish(slot, self._done(slot, "incomplete", "max_output_tokens"))
        elif len(slot.cached) + 1 >= self._model.n_ctx_per_seq:
            self._finish(slot, self._done(slot, "incomplete", "max_context"))
        else:
            slot.pending = [token]

    def _done(self, slot: _Slot, status: DoneStatus, reason: str | None = None, error: str | None = None) -> Done:
        job = slot.job
        assert job is not None
        return Done(
            status,
            reason=reason,
            prompt_tokens=len(job.prompt),
            cached_tokens=min(slot.cached_at_start, len(job.prompt)),
            output_tokens=len(job.resume) + slot.generated,
            error=error,
        )

    def _finish(self, slot: _Slot, done: Done, *, drop_cache: bool = False) -> None:
        job = slot.job
        assert job is not None
        tail = slot.text.flush()
        if tail:
            self._emit(job, Token(-1, tail))
        # A token sampled but never evaluated is not in the cache; nothing else needs undoing.
        slot.pending = []
        if drop_cache:
            self._model.forget(slot.seq)
            slot.cached = []
        if slot.sampler is not None:
            slot.sampler.close()
            slot.sampler = None
        slot.job = None
        slot.waiting_on = None
        self._emit(job, done)


def _take(slots: list[_Slot], budget: int) -> list[tuple[_Slot, list[int]]]:
    """The next run of each slot's prompt, in order, until `budget` tokens are taken; a picture
    attended both ways is taken whole (the decoder checked it fits a micro-batch)."""
    runs: list[tuple[_Slot, list[int]]] = []
    for slot in slots:
        if budget <= 0:
            break
        both_ways = slot.job.both_ways if slot.job is not None else frozenset()
        take = _run(slot.pending, len(slot.pending) if slot.pending[0] in both_ways else budget, both_ways)
        budget -= len(take)
        runs.append((slot, take))
    return runs


def _calls(runs: list[tuple[_Slot, list[int]]], generating: int) -> list[list[tuple[_Slot, list[int]]]]:
    """Split one step's token runs into decode calls at sequence boundaries.

    The first `generating` runs (one token each) go in the first call. Prompt runs follow in order,
    each call taking about an equal share of the prompt tokens, at least `_MIN_CALL_TOKENS` (each
    call reads the weights again), in at most `_MAX_CALLS` calls. A long prompt after short ones
    thus gets a call of its own.
    """
    prompt = sum(len(take) for _, take in runs[generating:])
    share = max(_MIN_CALL_TOKENS, -(-prompt // _MAX_CALLS))
    calls: list[list[tuple[_Slot, list[int]]]] = [runs[:generating]]
    filled = 0
    for run in runs[generating:]:
        # A new call where this run would overshoot the share by more than the call falls short.
        if filled and filled + len(run[1]) - share > share - filled and len(calls) < _MAX_CALLS:
            calls.append([])
            filled = 0
        calls[-1].append(run)
        filled += len(run[1])
    return [call for call in calls if call]


def _both_ways(slot: _Slot, take: list[int]) -> bool:
    return slot.job is not None and take[0] in slot.job.both_ways


def _name_os_thread(name: str) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)  # PR_SET_NAME


def _run(pending: list[int], limit: int, both_ways: frozenset[int] = frozenset()) -> list[int]:
    """The next inputs of one kind (ids, soft tokens, or soft tokens attended both ways), at most
    `limit` of them."""

    def kind(token: int) -> tuple[bool, bool]:
        return token < 0, token in both_ways

    first = kind(pending[0])
    n = 1
    while n < min(limit, len(pending)) and kind(pending[n]) == first:
        n += 1
    return pending[:n]
