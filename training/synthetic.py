"""Labelled pictures made with Pillow: the data our own CLIP is trained and evaluated on.

A picture holds one to three shapes of one kind and colour, at a size and a position, on a
background. Its caption names what is in it, in varied wording. One combination of shape, colour,
background, size and layout in six never appears in training (`is_held_out`, a fixed rule); the
evaluation set is made of exactly those, so zero-shot scores are measured on scenes the model has
never seen, while every shape, colour, background and every pair of them has been seen. (Holding
out whole colour-shape pairs was tried: the model then learns "red, so not a cross" from the data
and names the shape of an unseen pair right 0-20% of the time; see docs/sight.md.) Everything
follows from the seed.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

from workers.image.vocabulary import BACKGROUNDS, COLOURS, COUNTS, POSITIONS, SHAPES, SIZES

__all__ = [
    "BACKGROUNDS", "COLOURS", "COUNTS", "POSITIONS", "SHAPES", "SIZES",
    "Scene", "dataset", "is_held_out", "random_scene", "render",
]  # fmt: skip


def is_held_out(scene: Scene) -> bool:
    """One combination in six never appears in training; every pair of attributes still does."""
    layout = scene.count * 10 + list(POSITIONS).index(scene.position)
    key = f"{scene.shape}|{scene.colour}|{scene.background}|{scene.size}|{layout}"
    return zlib.crc32(key.encode()) % 6 == 0


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    size: str
    position: str
    count: int
    background: str

    def caption(self, rng: random.Random) -> str:
        """A caption that names the shape and colour and, at random, the other attributes."""
        plural = self.shape + ("es" if self.shape.endswith("ss") else "s") if self.count > 1 else self.shape
        words = [COUNTS[self.count] if self.count > 1 or rng.random() < 0.3 else "a"]
        if rng.random() < 0.5:
            words.append(self.size)
        # Many captions leave the colour or the shape out, so that each word stands on its own and
        # unseen colour-shape pairs can still be named.
        kind = rng.random()
        if kind < 0.35:
            words.append(plural)
        elif kind < 0.45:
            return rng.choice(["a photo of something {}.", "a {} shape.", "{} things."]).format(self.colour)
        else:
            words += [self.colour, plural]
        text = " ".join(words)
        if self.count == 1 and rng.random() < 0.5:
            text += f" {'in the center' if self.position == 'center' else 'on the ' + self.position}"
        if rng.random() < 0.4:
            text += f" on a {self.background} background"
        return rng.choice(["a photo of {}.", "a picture of {}.", "{}.", "an image showing {}."]).format(text)


def random_scene(rng: random.Random, *, held_out: bool) -> Scene:
    """A scene whose shape-colour-background combination is held out (`held_out=True`) or not."""
    while True:
        shape, colour, background = rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(BACKGROUNDS))
        count = rng.choice([1, 1, 1, 2, 3])
        size = rng.choice(list(SIZES)) if count == 1 else rng.choice(["small", "medium"])
        position = rng.choice(list(POSITIONS)) if count == 1 else "center"
        scene = Scene(shape, colour, size, position, count, background)
        if not (colour == "blue" and background == "light blue") and is_held_out(scene) == held_out:
            return scene


def render(scene: Scene, rng: random.Random, size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), _jitter(BACKGROUNDS[scene.background], rng, 10))
    draw = ImageDraw.Draw(image)
    radius = SIZES[scene.size] * size / 2 * rng.uniform(0.85, 1.15)
    centres = _centres(scene, rng, size, radius)
    colour = _jitter(COLOURS[scene.colour], rng, 18)
    for cx, cy in centres:
        _draw_shape(draw, scene.shape, (cx, cy), radius, colour=colour, angle=rng.uniform(0, math.pi))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return image


def dataset(seed: int, n: int, *, held_out: bool, image_size: int = 96) -> Iterator[tuple[Image.Image, Scene, str]]:
    rng = random.Random(seed)
    for _ in range(n):
        scene = random_scene(rng, held_out=held_out)
        yield render(scene, rng, image_size), scene, scene.caption(rng)


def _centres(scene: Scene, rng: random.Random, size: int, radius: float) -> list[tuple[float, float]]:
    if scene.count == 1:
        fx, fy = POSITIONS[scene.position]
        return [(fx * size + rng.uniform(-3, 3), fy * size + rng.uniform(-3, 3))]
    slots = [(0.27, 0.3), (0.73, 0.3), (0.27, 0.72), (0.73, 0.72), (0.5, 0.5)]
    rng.shuffle(slots)
    return [(fx * size, fy * size) for fx, fy in slots[: scene.count]]


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    centre: tuple[float, float],
    r: float,
    *,
    colour: tuple[int, int, int],
    angle: float,
) -> None:
    cx, cy = centre
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.polygon(_regular(cx, cy, r * 1.2, 4, math.pi / 4 + angle * 0.2), fill=colour)
    elif shape == "triangle":
        draw.polygon(_regular(cx, cy, r * 1.2, 3, -math.pi / 2 + angle * 0.2), fill=colour)
    elif shape == "cross":
        arm = r * 0.38
        draw.rectangle([cx - r, cy - arm, cx + r, cy + arm], fill=colour)
        draw.rectangle([cx - arm, cy - r, cx + arm, cy + r], fill=colour)
    else:  # star
        outer = _regular(cx, cy, r * 1.25, 5, -math.pi / 2 + angle * 0.2)
        inner = _regular(cx, cy, r * 0.5, 5, -math.pi / 2 + math.pi / 5 + angle * 0.2)
        draw.polygon([p for pair in zip(outer, inner, strict=True) for p in pair], fill=colour)


def _regular(cx: float, cy: float, r: float, n: int, start: float) -> list[tuple[float, float]]:
    return [
        (cx + r * math.cos(start + 2 * math.pi * k / n), cy + r * math.sin(start + 2 * math.pi * k / n))
        for k in range(n)
    ]


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    r, g, b = (max(0, min(255, c + rng.randint(-amount, amount))) for c in rgb)
    return r, g, b
