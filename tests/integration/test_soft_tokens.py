"""Soft tokens in llama.cpp: the model's own token embeddings, fed as vectors, act as the token ids do.

Real model (the bundled Qwen2.5 GGUF), real llama.cpp; no services. Vectors and ids are compared
over the same split into decode calls, since the split alone moves logits a little.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from shared.config import Settings
from shared.models import resolve_model
from workers.decoder.engine import Done, Engine, Job, Token
from workers.decoder.llama import ContextConfig, LlamaModel
from workers.decoder.token_table import TokenTable
from workers.fusion.projector import soft_token_ids

PROMPT = "<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def model_path():
    s = Settings()
    return resolve_model(s.decoder_model, s.models_dir).path


@pytest.fixture(scope="module")
def model(model_path) -> Iterator[LlamaModel]:
    m = LlamaModel(model_path, ContextConfig(n_ctx_per_seq=512, n_seq=2, n_batch=64, n_threads=2, n_gpu_layers=0))
    yield m
    m.close()


def _last_logits(model: LlamaModel, seq: int, head: list[int], middle, tail: list[int]) -> np.ndarray:
    """Decode head (ids), middle (ids or vectors), tail (ids) in three calls; logits after the tail."""
    model.forget(seq)
    model.decode([(t, i, seq, False) for i, t in enumerate(head)])
    pos = len(head)
    if isinstance(middle, np.ndarray):
        model.decode_vectors(middle, [(pos + i, seq, False) for i in range(len(middle))])
    else:
        model.decode([(t, pos + i, seq, False) for i, t in enumerate(middle)])
    pos += len(middle)
    model.decode([(t, pos + i, seq, i == len(tail) - 1) for i, t in enumerate(tail)])
    return model.logits(len(tail) - 1)


def test_token_embeddings_as_vectors_give_the_same_next_token(model: LlamaModel, model_path):
    table = TokenTable(model_path)
    assert table.width == model.n_embd
    tokens = model.tokenize(PROMPT)
    words = model.tokenize("What is the capital of France")
    start = next(i for i in range(len(tokens)) if tokens[i : i + len(words)] == words)
    head, middle, tail = tokens[:start], tokens[start : start + len(words)], tokens[start + len(words) :]

    by_ids = _last_logits(model, 0, head, middle, tail)
    by_vectors = _last_logits(model, 1, head, table.rows(middle), tail)

    assert int(by_ids.argmax()) == int(by_vectors.argmax())
    assert model.token_text(int(by_ids.argmax())).strip().startswith("Paris")
    assert float(np.abs(by_ids - by_vectors).max()) < 0.6
    # Not a vacuous match: other vectors in that place change the answer's logits a lot.
    noise = np.random.default_rng(0).normal(0, 0.02, size=(len(middle), model.n_embd)).astype(np.float32)
    assert float(np.abs(by_ids - _last_logits(model, 1, head, noise, tail)).max()) > 2.0


def _generate(engine: Engine, prompt: list[int], vectors: dict) -> list[int]:
    job = Job(prompt=prompt, vectors=vectors, max_new_tokens=8, temperature=0.0, top_p=1.0, seed=0, deadline=1e18)
    engine.submit(job)
    out = []
    while not isinstance(event := job.events.get(timeout=60), Done):
        assert isinstance(event, Token)
        if event.id >= 0:
            out.append(event.id)
    assert event.status in ("completed", "incomplete"), event
    return out


def test_engine_mixes_soft_tokens_and_ids_in_one_sequence(model: LlamaModel, model_path):
    table = TokenTable(model_path)
    tokens = model.tokenize(PROMPT)
    words = model.tokenize("What is the capital of France")
    start = next(i for i in range(len(tokens)) if tokens[i : i + len(words)] == words)
    rows = table.rows(words)
    soft = soft_token_ids(rows)
    mixed = tokens[:start] + soft + tokens[start + len(words) :]

    engine = Engine(model)
    try:
        plain = _generate(engine, tokens, {})
        fused = _generate(engine, mixed, dict(zip(soft, rows, strict=True)))
        again = _generate(engine, mixed, dict(zip(soft, rows, strict=True)))  # reuses the cached prefix
    finally:
        engine.stop()
    assert "Paris" in "".join(model.token_text(t) for t in fused)
    assert fused[:2] == plain[:2]
    assert again == fused
