"""The decoder's side of fusion: the projectors it loaded, and soft tokens for a conversation's media.

A picture's CLIP embedding and an utterance's Whisper encoder states were stored in Redis by the
workers (a JSON header + raw bytes); here they go through the projectors to become soft tokens.
A part without stored embeddings (unreadable, or from before fusion was on) is left to its text.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import redis

from shared.config import Settings
from shared.errors import ModelError
from shared.keys import Keys
from shared.messages import (
    LAYOUT_EMBEDDING,
    EncoderStates,
    ImageEmbedding,
    InputAudio,
    InputImage,
    Item,
    MessageItem,
)
from shared.models import mmproj_id
from workers.decoder.prompt import SoftBlock
from workers.fusion.bundled import BundledProjector, bundled_projector
from workers.fusion.projector import Modality, Projector, ProjectorMeta, ProjectorMismatch
from workers.fusion.speech import SpeechProjector

log = logging.getLogger(__name__)

P = TypeVar("P", Projector, SpeechProjector)


@dataclass(frozen=True)
class Projectors:
    image: Projector | None
    audio: SpeechProjector | None
    # With a llama.cpp projector (`decoder_mmproj`) the image workers store the model's own image
    # embeddings: the id they carry (`shared.models.mmproj_id`), and the model's width.
    mmproj: str | None = None
    width: int = 0
    # What the decoder multiplies soft tokens by (`LlamaModel.input_scale`), and the most tokens it
    # computes at once (a picture attended both ways must fit in one such pass).
    input_scale: float = 1.0
    n_ubatch: int = 0


def load_projectors(
    settings: Settings,
    *,
    llm_sha256: str,
    llm_dim: int,
    mmproj_sha256: str | None = None,
    input_scale: float = 1.0,
    n_ubatch: int = 0,
) -> Projectors:
    """The configured projectors, each checked against the loaded language model.

    A projector named by path that does not fit is an error the operator must fix. The bundled ones
    fit the bundled language models: with another one (or another encoder) that modality reaches the
    model as text, and the log says so.
    """
    image = (
        None
        if mmproj_sha256 is not None
        else _load(
            "image",
            settings.image_projector,
            settings.image_projector_sha256,
            bundled_projector("image", llm_sha256),
            Projector.load,
            llm_sha256=llm_sha256,
            llm_dim=llm_dim,
        )
    )
    audio = _load(
        "audio",
        settings.audio_projector,
        settings.audio_projector_sha256,
        bundled_projector("audio", llm_sha256),
        SpeechProjector.load,
        llm_sha256=llm_sha256,
        llm_dim=llm_dim,
    )
    mmproj = None if mmproj_sha256 is None else mmproj_id(mmproj_sha256)
    return Projectors(image, audio, mmproj, llm_dim, input_scale, n_ubatch)


def _load(
    modality: Modality,
    spec: str,
    expected_sha256: str | None,
    bundled: BundledProjector | None,
    loader: Callable[[Path], P],
    *,
    llm_sha256: str,
    llm_dim: int,
) -> P | None:
    if spec == "none":
        return None
    if spec == "bundled" and bundled is None:
        log.warning("no bundled %s projector for this language model; it reaches the model as text", modality)
        return None
    path = bundled.path if spec == "bundled" and bundled is not None else Path(spec).expanduser()
    if not path.is_file():
        if spec == "bundled":
            log.warning("no bundled %s projector at %s; it reaches the model as text", modality, path)
            return None
        raise FileNotFoundError(f"{modality} projector {path} does not exist")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = bundled.sha256 if spec == "bundled" and bundled is not None else expected_sha256
    if expected is not None and digest != expected:
        raise ModelError(f"{modality} projector {path} has sha256 {digest}, expected {expected}")
    projector = loader(path)
    meta: ProjectorMeta = projector.meta
    try:
        meta.check(modality=modality, llm_sha256=llm_sha256, llm_dim=llm_dim)
    except ProjectorMismatch as exc:
        if spec != "bundled":
            raise
        log.warning("bundled %s projector not used: %s", modality, exc)
        return None
    log.info("%s projector %s (from %s), sha256 %s", modality, path.name, meta.encoder, digest[:12])
    return projector


def soft_inputs(
    client: redis.Redis, keys: Keys, session_id: str, items: Sequence[Item], projectors: Projectors
) -> dict[tuple[str, int], SoftBlock]:
    """Soft tokens for every picture and utterance in `items` that has stored embeddings."""
    wanted: list[tuple[str, int, bool, str]] = []  # item id, content index, a picture?, Redis key
    for item in items:
        item_id = item.id
        for index, part in enumerate(item.content if isinstance(item, MessageItem) else []):
            if isinstance(part, InputImage) and (projectors.image is not None or projectors.mmproj is not None):
                wanted.append((item_id, index, True, keys.item_image_embedding(session_id, item_id, index)))
            elif isinstance(part, InputAudio) and projectors.audio is not None:
                wanted.append((item_id, index, False, keys.item_encoder_states(session_id, item_id)))
    if not wanted:
        return {}
    with client.pipeline(transaction=False) as pipe:
        for *_, key in wanted:
            pipe.hmget(key, "header", "data")
        stored = pipe.execute()
    out: dict[tuple[str, int], SoftBlock] = {}
    for (item_id, index, image, _), (header, data) in zip(wanted, stored, strict=True):
        if header is None or data is None:
            continue
        try:
            block = _block(header, data, projectors, image=image)
        except (ProjectorMismatch, ValueError) as exc:  # (ValueError: a header or size this version cannot read)
            log.warning("%s/%d not projected: %s", item_id, index, exc)
            continue
        if block is not None:
            out[(item_id, index)] = block
    return out


def _block(header: bytes, data: bytes, projectors: Projectors, *, image: bool) -> SoftBlock | None:
    if image:
        picture = ImageEmbedding.model_validate_json(header)
        embedding = np.frombuffer(data, dtype=picture.dtype).reshape(picture.shape)
        if projectors.mmproj is not None:
            return _native(picture, embedding, projectors)
        assert projectors.image is not None
        projectors.image.meta.check_input(picture.model, tuple(picture.shape))
        return SoftBlock(projectors.image(embedding), tuple(projectors.image.meta.slots.split()))
    assert projectors.audio is not None
    speech = EncoderStates.model_validate_json(header)
    states = np.frombuffer(data, dtype=speech.dtype).reshape(speech.shape)
    projectors.audio.meta.check_input(speech.model, (speech.shape[1],))
    vectors = projectors.audio(states)
    return SoftBlock(vectors) if len(vectors) else None


def _native(picture: ImageEmbedding, embedding: np.ndarray, projectors: Projectors) -> SoftBlock:
    """A picture the image worker encoded with the model's own projector: fed as it is.

    The embeddings are already what the model's layers take: where the decoder scales soft tokens
    as the model scales its token embeddings (Gemma), they are divided by that here so that they
    reach the model unscaled, as mtmd feeds them.
    """
    if picture.model != projectors.mmproj:
        raise ProjectorMismatch(f"encoded by {picture.model}, this decoder feeds {projectors.mmproj}")
    if embedding.ndim != 2 or embedding.shape[1] != projectors.width:
        raise ProjectorMismatch(f"embeddings of shape {embedding.shape}, the model's width is {projectors.width}")
    layout = picture.layout or [LAYOUT_EMBEDDING] * len(embedding)
    if (places := layout.count(LAYOUT_EMBEDDING)) != len(embedding):
        raise ProjectorMismatch(f"a layout of {places} places for {len(embedding)} embeddings")
    if not picture.causal and (longest := _longest_tile(layout)) > projectors.n_ubatch:
        raise ProjectorMismatch(
            f"a picture with tiles of {longest} tokens attended both ways needs MMSTREAM_DECODER_N_UBATCH >= {longest}"
        )
    vectors = embedding.astype(np.float32) / np.float32(projectors.input_scale)
    return SoftBlock(vectors, layout=tuple(picture.layout), native=True, causal=picture.causal)


def _longest_tile(layout: Sequence[int]) -> int:
    longest = run = 0
    for token in layout:
        run = run + 1 if token == LAYOUT_EMBEDDING else 0
        longest = max(longest, run)
    return longest
