"""The held-out multimodal question set of `mmstream eval`, generated from a seed.

Pictures come from `training.synthetic`, always from attribute combinations held out of CLIP
and projector training; speech is spoken by espeak-ng. Every question has one right label out of a
closed set, so answers are scored by the label they name.

- image: a picture and a typed question about its colour, shape, count or position;
- audio: a spoken sentence and a typed question that only the speech answers;
- image+audio: a picture and a spoken question about it; neither alone says which answer is asked.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from training.speech import have_espeak, speak
from training.synthetic import COLOURS, COUNTS, POSITIONS, SHAPES, Scene, random_scene, render

Modality = Literal["image", "audio", "image+audio"]

_LABELS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "count": tuple(COUNTS.values()),
    "position": tuple(POSITIONS),
}
_ASK = {
    "colour": "What colour is the shape in the picture? Answer with one word.",
    "shape": "What shape is in the picture? Answer with one word.",
    "count": "How many shapes are in the picture? Answer with one word.",
    # The 0.5B default model answers "where is ..." with a shape, but "what is the position" well.
    "position": "What is the position of the shape? Answer with one word.",
}
_SPOKEN_ASK = {"colour": "What colour is the shape in this picture?", "shape": "What shape is in this picture?"}


@dataclass(frozen=True)
class Question:
    id: str
    modality: Modality
    group: str
    labels: tuple[str, ...]
    answer: str
    text: str | None = None  # typed part of the message
    picture: bytes | None = None  # PNG
    speech: bytes | None = None  # PCM16 mono, 24 kHz


def question_set(seed: int, per_group: int, *, speech: bool = True) -> list[Question]:
    rng = random.Random(seed)
    out = list(_image_questions(rng, per_group))
    if speech and have_espeak():
        out += _audio_questions(rng, per_group)
        out += _both_questions(rng, per_group)
    return out


def _png(scene: Scene, rng: random.Random) -> bytes:
    image: Image.Image = render(scene, rng)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _scene(rng: random.Random, *, single: bool = False) -> Scene:
    while True:
        scene = random_scene(rng, held_out=True)
        if not single or scene.count == 1:
            return scene


def _answer(scene: Scene, group: str) -> str:
    return COUNTS[scene.count] if group == "count" else str(getattr(scene, group))


def _image_questions(rng: random.Random, n: int) -> Iterator[Question]:
    for group, labels in _LABELS.items():
        for i in range(n):
            scene = _scene(rng, single=group == "position")
            yield Question(
                id=f"image-{group}-{i}",
                modality="image",
                group=group,
                labels=labels,
                answer=_answer(scene, group),
                text=_ASK[group],
                picture=_png(scene, rng),
            )


def _audio_questions(rng: random.Random, n: int) -> Iterator[Question]:
    for group, sentence in (("colour", "My favourite colour is {}."), ("shape", "My favourite shape is the {}.")):
        for i in range(n):
            answer = rng.choice(_LABELS[group])
            yield Question(
                id=f"audio-{group}-{i}",
                modality="audio",
                group=group,
                labels=_LABELS[group],
                answer=answer,
                text=f"What is my favourite {'colour' if group == 'colour' else 'shape'}? Answer with one word.",
                speech=speak(sentence.format(answer)),
            )


def _both_questions(rng: random.Random, n: int) -> Iterator[Question]:
    labels = _LABELS["colour"] + _LABELS["shape"]
    for i in range(2 * n):
        group = "colour" if i % 2 == 0 else "shape"
        scene = _scene(rng)
        yield Question(
            id=f"both-{group}-{i}",
            modality="image+audio",
            group=f"spoken {group}",
            labels=labels,
            answer=_answer(scene, group),
            text="Answer with one word.",
            picture=_png(scene, rng),
            speech=speak(_SPOKEN_ASK[group]),
        )
