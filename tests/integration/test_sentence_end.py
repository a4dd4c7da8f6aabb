"""Semantic VAD's second opinion from the words: the bundled SmolLM2-135M scores a whole question as a
whole message and its first half as unfinished (real model, real llama.cpp)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.config import Settings
from shared.models import resolve_model
from workers.audio.sentence_end import SentenceEndModel

# (first half, rest): the halves bench/turns.py pauses between, and a few more.
SENTENCES = [
    ("What is the capital", "of France?"),
    ("I would like to know", "how far away the moon is."),
    ("Can you tell me", "what time it is in Tokyo?"),
    ("How many legs", "does a spider have?"),
    ("Could you please explain", "why the sky is blue?"),
    ("Which planet", "is the largest in our solar system?"),
    ("How do I", "bake bread at home?"),
]


@pytest.fixture(scope="module")
def model() -> Iterator[SentenceEndModel]:
    s = Settings()
    m = SentenceEndModel(resolve_model(s.turn_text_model, s.models_dir, wheels_dir=s.wheels_dir).path, threads=2)
    yield m
    m.close()


@pytest.mark.parametrize(("first", "rest"), SENTENCES)
def test_a_whole_question_reads_as_done_and_its_first_half_does_not(model: SentenceEndModel, first: str, rest: str):
    threshold = Settings().turn_text_threshold
    assert model.score(f"{first} {rest}") >= threshold
    assert model.score(first) < threshold


def test_whispers_closing_mark_does_not_decide(model: SentenceEndModel):
    # Whisper closes every window ("What is the capital?"): the score is the one without the mark (to
    # float noise: the cache cells differ between calls).
    assert model.score(" What is the capital?") == pytest.approx(model.score("What is the capital"), abs=0.05)
    assert model.score("") == 0.0
