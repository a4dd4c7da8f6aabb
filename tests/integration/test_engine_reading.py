"""Prompts that arrive together are read in one step, in several decode calls (real model).

The shortest prompts are read first and their sequences sampled at once: their first tokens come
before the longest prompt has been read, and every reply is the one its prompt gets alone.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import pytest

from tests.integration.engine_jobs import collect, open_model
from workers.decoder.engine import Done, Engine, EngineEvent, Job, Token
from workers.decoder.llama import LlamaModel

STORY = " ".join(f"Town {i} lies on the river and has a market on day {i}." for i in range(24))
PROMPTS = [
    "What is the capital of France?",
    "Name three primary colours.",
    STORY + " Which town has a market on day 3?",
]


def _chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


class _Stamped(queue.SimpleQueue[EngineEvent]):
    """A job's event queue that notes when the engine put its first token."""

    first: float = 0.0

    def put(self, item: EngineEvent, block: bool = True, timeout: float | None = None) -> None:
        if isinstance(item, Token) and not self.first:
            self.first = time.monotonic()
        super().put(item, block, timeout)


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaModel]:
    m = open_model(n_ctx_per_seq=1024, n_seq=3, n_batch=2048)
    yield m
    m.close()


def _job(model: LlamaModel, text: str) -> Job:
    return Job(
        prompt=model.tokenize(_chat(text)),
        max_new_tokens=8,
        temperature=0.0,
        top_p=1.0,
        seed=0,
        deadline=time.monotonic() + 120,
        events=_Stamped(),
    )


def _run(model: LlamaModel, texts: list[str]) -> list[tuple[str, Done, float]]:
    engine = Engine(model, gather_s=0.05)  # a new engine believes every slot empty
    try:
        jobs = [_job(model, text) for text in texts]
        for job in jobs:
            engine.submit(job)
        results = [collect(job) for job in jobs]
        return [(text, done, job.events.first) for (text, done), job in zip(results, jobs, strict=True)]  # type: ignore[attr-defined]
    finally:
        engine.stop()


def test_short_prompts_get_their_first_tokens_before_a_long_one_is_read(model: LlamaModel):
    assert len(model.tokenize(STORY)) > 3 * 64  # the long prompt needs a call of its own
    alone = [_run(model, [text])[0][0] for text in PROMPTS]
    together = _run(model, PROMPTS)
    assert [text for text, _, _ in together] == alone
    assert all(done.cached_tokens == 0 for _, done, _ in together)  # no slot held anything
    short_a, short_b, long = (first for _, _, first in together)
    assert max(short_a, short_b) < long
