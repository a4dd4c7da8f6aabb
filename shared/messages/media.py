"""Headers of the encoder outputs stored in Redis beside their raw bytes (`v: 1`), read for fusion."""

from __future__ import annotations

from typing import Literal

from shared.messages.base import StrictModel


class EncoderStates(StrictModel):
    """Header of an utterance's Whisper encoder output, stored beside its raw bytes for fusion."""

    v: Literal[1] = 1
    model: str
    dtype: Literal["float16", "float32"]
    shape: list[int]  # [frames, width]
    frames_per_second: float


# In an ImageEmbedding's `layout`: the place of the next row of the embeddings (text tokens are >= 0).
LAYOUT_EMBEDDING = -1


class ImageEmbedding(StrictModel):
    """Header of a picture's embedding, stored beside its raw bytes.

    From CLIP: one vector, `[width]`, which the decoder's projector turns into soft tokens. From a
    llama.cpp projector (`model` "mmproj:<sha256>"): `[tokens, width]` already in the language
    model's input space (every tile's, for a projector that cuts a picture into tiles); `layout`,
    the picture's place in the prompt: text token ids (marks around the picture, a tile's row and
    column) and LAYOUT_EMBEDDING for each row of the embeddings, in order (empty: the rows
    alone); and `causal` false where the model attends both ways over each tile (Gemma 3: a tile
    is then read in one decode call of its own, with causal attention off).
    """

    v: Literal[1] = 1
    model: str
    dtype: Literal["float16", "float32"] = "float32"
    shape: list[int]
    layout: list[int] = []
    causal: bool = True
