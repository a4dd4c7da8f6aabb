"""Pictures for tests, drawn the way the training data is (and in other formats)."""

from __future__ import annotations

import base64
import io
import random

from PIL import Image

from training.synthetic import Scene, render


def picture(
    shape: str, colour: str, *, size: str = "large", count: int = 1, background: str = "white", seed: int = 0
) -> Image.Image:
    return render(Scene(shape, colour, size, "center", count, background), random.Random(seed))


def data_url(image: Image.Image, fmt: str = "PNG") -> str:
    out = io.BytesIO()
    image.save(out, format=fmt)
    mime = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}[fmt]
    return f"data:image/{mime};base64,{base64.b64encode(out.getvalue()).decode()}"


def image_message(url: str, text: str | None = None) -> dict:
    content: list[dict] = [{"type": "input_image", "image_url": url}]
    if text:
        content.append({"type": "input_text", "text": text})
    return {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": content}}
