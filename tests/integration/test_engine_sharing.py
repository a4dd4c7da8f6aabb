"""Sequences share what they have read (real model, real llama.cpp).

A prefix that another sequence holds or is reading is copied from its cache rather than evaluated
again, and the reply is the one the prompt gets alone; a conversation kept in a free slot is copied
from, not overwritten, when another slot is free; one whose slot went to another conversation is
loaded back from host memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.engine_jobs import collect, open_model
from workers.decoder.engine import MIN_SHARED_PREFIX, Done, Engine, Job
from workers.decoder.llama import LlamaModel

PERSONA = "<|im_start|>system\n" + " ".join(f"Rule {i}: answer briefly and politely." for i in range(40))
PERSONA += "<|im_end|>\n"
SHORT_SYSTEM = (
    "<|im_start|>system\nYou are a careful assistant who answers questions about geography, towns, rivers and "
    "markets. Keep every answer short, give the name first, and never invent a town the user did not mention."
    "<|im_end|>\n"
)


def _user(system: str, text: str) -> str:
    return system + f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


LAYOUTS = {"unified-cache": True, "stream-per-sequence": False}
# The default layout for every test; the copy between streams of the other is checked once, by the
# test that copies a prefix while it is being read (the rest is the engine's logic, the same for both).
BOTH_LAYOUTS = pytest.mark.parametrize("model", list(LAYOUTS), indirect=True)


@pytest.fixture(scope="module", params=["unified-cache"])
def model(request: pytest.FixtureRequest) -> Iterator[LlamaModel]:
    # Small prompt chunks: the persona takes several steps to read, so a second prompt arrives
    # while the first is still reading it. A copy is bookkeeping in a unified cache and a memory
    # copy between streams otherwise: both must give the reply the prompt gets alone.
    m = open_model(n_ctx_per_seq=1024, n_seq=3, n_batch=64, kv_unified=LAYOUTS[request.param])
    yield m
    m.close()


@pytest.fixture
def engine(model: LlamaModel) -> Iterator[Engine]:
    e = Engine(model)  # a new engine believes every slot empty, and clears what it reuses
    yield e
    e.stop()


def _job(model: LlamaModel, prompt: str, tokens: int = 12) -> Job:
    return Job(
        prompt=model.tokenize(prompt),
        max_new_tokens=tokens,
        temperature=0.0,
        top_p=1.0,
        seed=0,
        deadline=time.monotonic() + 120,
    )


def _alone(model: LlamaModel, prompt: str) -> str:
    e = Engine(model)
    try:
        job = _job(model, prompt)
        e.submit(job)
        return collect(job)[0]
    finally:
        e.stop()


@BOTH_LAYOUTS
def test_a_prefix_being_read_is_read_once(model: LlamaModel, engine: Engine):
    first, second = _user(PERSONA, "What is the capital of France?"), _user(PERSONA, "Name a primary colour.")
    expected = [_alone(model, first), _alone(model, second)]
    persona = len(model.tokenize(PERSONA))
    assert persona > 4 * 64

    jobs = [_job(model, first), _job(model, second)]
    for job in jobs:
        engine.submit(job)
    (text_a, done_a), (text_b, done_b) = collect(jobs[0]), collect(jobs[1])

    assert done_a.cached_tokens == 0
    # The second waited for the first to read the persona and took a copy of it.
    assert done_b.cached_tokens >= persona - 2, done_b
    assert [text_a, text_b] == expected


def test_a_conversation_in_a_free_slot_is_copied_not_overwritten(model: LlamaModel, engine: Engine):
    story = " ".join(f"Town {i} lies on the river and has a market on day {i}." for i in range(20))
    conversation = _user(SHORT_SYSTEM, story + " Which town has a market on day 3?")
    turn = _job(model, conversation)
    engine.submit(turn)
    answer, _ = collect(turn)

    other = _job(model, _user(SHORT_SYSTEM, "What is the capital of Italy?"))
    engine.submit(other)
    _, done_other = collect(other)
    # The shared system line was copied from the conversation's slot...
    system = len(model.tokenize(SHORT_SYSTEM))
    assert system > MIN_SHARED_PREFIX
    assert done_other.cached_tokens >= system - 1, done_other

    # ...which still holds the whole conversation for its next turn.
    follow_up = conversation + answer + "<|im_end|>\n<|im_start|>user\nAnd on day 4?<|im_end|>\n"
    follow_up += "<|im_start|>assistant\n"
    nxt = _job(model, follow_up)
    engine.submit(nxt)
    _, done_next = collect(nxt)
    assert done_next.cached_tokens >= len(model.tokenize(conversation)), done_next


def test_a_conversation_that_lost_its_slot_is_loaded_from_host_memory(model: LlamaModel):
    story = " ".join(f"Town {i} lies on the river and has a market on day {i}." for i in range(12))
    conversation = _user(SHORT_SYSTEM, story + " Which town has a market on day 3?")
    others = [_user(f"<|im_start|>system\nYou answer in {w} words.<|im_end|>\n", "Name a colour.") for w in "ab"]

    def second_turn(engine: Engine, *, crowd: bool) -> tuple[str, Done]:
        turn = _job(model, conversation)
        engine.submit(turn)
        answer, _ = collect(turn)
        # Newcomers that share little with any slot take the lowest free one: the first of
        # these goes where the conversation was kept.
        for text in [*others, _user(SHORT_SYSTEM.replace("careful", "brief"), "Name a river.")] if crowd else []:
            other = _job(model, text)
            engine.submit(other)
            collect(other)
        follow_up = conversation + answer + "<|im_end|>\n<|im_start|>user\nAnd on day 4?<|im_end|>\n"
        nxt = _job(model, follow_up + "<|im_start|>assistant\n")
        engine.submit(nxt)
        return collect(nxt)

    def run(*, crowd: bool, host_cache_bytes: int) -> tuple[str, Done]:
        engine = Engine(model, host_cache_bytes=host_cache_bytes)
        try:
            return second_turn(engine, crowd=crowd)
        finally:
            engine.stop()

    text, done = run(crowd=True, host_cache_bytes=256 << 20)
    assert done.cached_tokens >= len(model.tokenize(conversation)), done
    _, done_uncached = run(crowd=True, host_cache_bytes=0)
    assert done_uncached.cached_tokens < len(model.tokenize(conversation))  # it was read again
    # The loaded cache is the bytes the slot held: the reply is the one of a conversation that
    # kept its slot, exactly (reading it again may differ in the last bits, and a near tie with it).
    text_held, done_held = run(crowd=False, host_cache_bytes=0)
    assert done_held.cached_tokens == done.cached_tokens
    assert text == text_held
