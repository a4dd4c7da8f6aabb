"""The decoder's side of fusion: the projector it loaded, and soft tokens for a conversation's pictures.

A picture's CLIP embedding was stored in Redis by the image worker (header + raw float32 bytes);
here it goes through the image projector to become `k` soft tokens. A picture without an
embedding (unreadable, or described before fusion was on) is left to its description.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import redis

from shared.config import Settings
from shared.errors import ModelError
from shared.keys import Keys
from shared.messages import ImageEmbedding, InputImage, MessageItem
from workers.decoder.prompt import SoftBlock
from workers.fusion.bundled import BUNDLED_IMAGE_PROJECTOR, BUNDLED_IMAGE_PROJECTOR_SHA256
from workers.fusion.projector import Projector, ProjectorMismatch

log = logging.getLogger(__name__)


def load_image_projector(settings: Settings, *, llm_sha256: str, llm_dim: int) -> Projector | None:
    """The configured image projector, checked against the loaded language model.

    A projector named by path that does not fit is an error the operator must fix. The bundled one
    only fits the default models: with another language model it is set aside with a warning and
    pictures reach the model as text.
    """
    spec = settings.image_projector
    if spec == "none":
        return None
    path = BUNDLED_IMAGE_PROJECTOR if spec == "bundled" else Path(spec).expanduser()
    if not path.is_file():
        if spec == "bundled":
            log.warning("no bundled image projector at %s; pictures reach the model as text", path)
            return None
        raise FileNotFoundError(f"image projector {path} does not exist")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = BUNDLED_IMAGE_PROJECTOR_SHA256 if spec == "bundled" else settings.image_projector_sha256
    if expected is not None and digest != expected:
        raise ModelError(f"image projector {path} has sha256 {digest}, expected {expected}")
    projector = Projector.load(path)
    try:
        projector.meta.check(modality="image", llm_sha256=llm_sha256, llm_dim=llm_dim)
    except ProjectorMismatch as exc:
        if spec != "bundled":
            raise
        log.warning("bundled image projector not used: %s", exc)
        return None
    log.info("image projector %s (k=%d), sha256 %s", path.name, projector.meta.k, digest[:12])
    return projector


def image_soft_inputs(
    client: redis.Redis, keys: Keys, session_id: str, items: Sequence[MessageItem], projector: Projector
) -> dict[tuple[str, int], SoftBlock]:
    """Soft tokens for every picture in `items` that has a stored embedding."""
    wanted = [
        (item.id or "", index)
        for item in items
        for index, part in enumerate(item.content)
        if isinstance(part, InputImage)
    ]
    if not wanted:
        return {}
    with client.pipeline(transaction=False) as pipe:
        for item_id, index in wanted:
            pipe.hmget(keys.item_image_embedding(session_id, item_id, index), "header", "data")
        stored = pipe.execute()
    names = tuple(projector.meta.slots.split())
    out: dict[tuple[str, int], SoftBlock] = {}
    for key, (header, data) in zip(wanted, stored, strict=True):
        if header is None or data is None:
            continue
        meta = ImageEmbedding.model_validate_json(header)
        embedding = np.frombuffer(data, dtype=meta.dtype).reshape(meta.shape)
        try:
            projector.meta.check_input(meta.model, tuple(meta.shape))
        except ProjectorMismatch as exc:
            log.warning("picture %s/%d not projected: %s", *key, exc)
            continue
        out[key] = SoftBlock(projector(embedding), names)
    return out
