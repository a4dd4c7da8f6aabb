"""Batch work in the decoding engine yields to interactive work (real model, real llama.cpp).

While an interactive job is active, a background job takes no step; it resumes afterwards with its
own KV cache intact and finishes with the text it would have produced alone.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import pytest

from tests.integration.engine_jobs import open_model
from workers.decoder.engine import Done, Engine, Job, Token

COUNT = "<|im_start|>user\nCount from 1 to 40, separated by commas.<|im_end|>\n<|im_start|>assistant\n"
LONG = "<|im_start|>user\nCount from 1 to 100, separated by commas.<|im_end|>\n<|im_start|>assistant\n"
FRANCE = "<|im_start|>user\nWhat is the capital of France? One word.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    model = open_model(n_ctx_per_seq=512, n_seq=2, n_batch=128)
    e = Engine(model)
    yield e
    e.stop()
    model.close()


def _job(engine: Engine, prompt: str, tokens: int, *, background: bool) -> Job:
    return Job(
        prompt=engine.model.tokenize(prompt),
        max_new_tokens=tokens,
        temperature=0.0,
        top_p=1.0,
        seed=0,
        deadline=time.monotonic() + 120,
        background=background,
    )


def _collect(job: Job, log: list[tuple[str, float]], name: str) -> str:
    text = []
    while True:
        event = job.events.get(timeout=120)
        if isinstance(event, Done):
            log.append((f"{name}:done", time.monotonic()))
            return "".join(text)
        assert isinstance(event, Token)
        text.append(event.text)
        log.append((name, time.monotonic()))


def test_background_jobs_pause_while_a_person_waits(engine: Engine):
    alone = _job(engine, COUNT, 40, background=True)
    engine.submit(alone)
    reference = _collect(alone, [], "ref")

    log: list[tuple[str, float]] = []
    batch = _job(engine, COUNT, 40, background=True)
    engine.submit(batch)
    first = batch.events.get(timeout=60)  # the batch job is generating
    assert isinstance(first, Token)
    person = _job(engine, FRANCE, 8, background=False)
    engine.submit(person)
    answer = _collect(person, log, "person")
    rest = _collect(batch, log, "batch")

    assert "Paris" in answer
    person_done = next(t for name, t in log if name == "person:done")
    # Once the person's job was admitted, the batch job took no step until it was done (a token
    # sampled in the step running when the person arrived may be queued before theirs).
    batch_during = [t for name, t in log if name == "batch" and t < person_done]
    assert len(batch_during) <= 1, log
    assert first.text + rest == reference  # resumed where it stopped, same greedy text


def test_paused_time_does_not_count_against_a_background_deadline(engine: Engine):
    # 12 tokens in 2 s of its own time: 6 tokens/s is enough, a margin for a slow or shared CPU (30
    # tokens ran out of time once with another test run on the same 2 cores). The person's 200 tokens
    # must outlast it: they took 3.0 s on an AVX-512 CPU (3 s of deadline was once 0.4 ms too long).
    batch = _job(engine, COUNT, 12, background=True)
    batch.deadline = time.monotonic() + 2.0
    engine.submit(batch)
    assert isinstance(batch.events.get(timeout=60), Token)
    person = _job(engine, LONG, 200, background=False)  # keeps the engine busy past the batch deadline
    engine.submit(person)
    started = time.monotonic()
    _collect(person, [], "person")
    assert time.monotonic() - started > 2.0
    done = None
    while done is None:
        try:
            event = batch.events.get(timeout=60)
        except queue.Empty:
            break
        if isinstance(event, Done):
            done = event
    assert done is not None and done.status == "incomplete" and done.reason == "max_output_tokens", done
