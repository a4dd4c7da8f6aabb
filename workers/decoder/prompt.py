"""Conversation items -> prompt tokens, through the model's own chat template.

The template is the Jinja text stored in the GGUF (`tokenizer.chat_template`), rendered in a
sandbox as Hugging Face and llama.cpp do. When the conversation is longer than the context allows,
the oldest turns are left out (the Realtime API's `truncation: auto`); instructions always stay.

Pictures and speech reach the model by the fusion mode: `text` as their description (zero-shot
tags) or transcript, `embed` as soft tokens (projected CLIP embeddings, projected Whisper encoder
states) in their place, `both` as the two together.
The template is rendered with a marker where soft tokens go; the text between markers is
tokenized piece by piece and the soft tokens' ids are put between the pieces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.messages import FusionMode, InputAudio, InputImage, MessageItem, part_text
from workers.fusion.projector import soft_token_ids

Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SoftBlock:
    """The soft tokens of one content part: vectors of shape (k, width), and optionally a name per
    vector (what it was trained to say), rendered before it as "name: <vector>"."""

    vectors: Floats
    names: tuple[str, ...] = ()


# (item id, content index) -> its soft tokens
SoftInputs = Mapping[tuple[str, int], SoftBlock]
_MARKER = "<mm:soft:{}>"
_MARKER_RE = re.compile(r"<mm:soft:(\d+)>")

ChatMessage = dict[str, str]

# Used only when a model file carries no template of its own.
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _raise(message: str) -> None:
    raise TemplateError(message)


class ChatTemplate:
    def __init__(self, source: str | None, *, bos_token: str, eos_token: str) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._template = env.from_string(source or _CHATML)
        self._specials: dict[str, Any] = {"bos_token": bos_token, "eos_token": eos_token}

    def render(self, messages: Sequence[ChatMessage]) -> str:
        return self._template.render(messages=list(messages), add_generation_prompt=True, **self._specials)


def to_messages(
    items: Sequence[MessageItem],
    instructions: str,
    mode: FusionMode = "text",
    soft: SoftInputs | None = None,
    blocks: list[Floats] | None = None,
) -> list[ChatMessage]:
    """Chat messages for the template; soft-token blocks are appended to `blocks`, marked in the text."""
    messages = [{"role": "system", "content": instructions}] if instructions else []
    for item in items:
        text = []
        for index, part in enumerate(item.content):
            block = (soft or {}).get((item.id, index))
            if isinstance(part, InputImage) and mode != "text" and block is not None and blocks is not None:
                said = _mark(block, blocks) if mode == "embed" else _with_tags(part.description or "", block, blocks)
                text.append(f"[Picture: {said}]\n")
            elif isinstance(part, InputAudio) and mode != "text" and block is not None and blocks is not None:
                said = _mark(block, blocks)
                if mode == "both" and part.transcript:
                    said += f" (transcript: {part.transcript.strip()})"
                text.append(f"[Speech: {said}]\n")
            else:
                text.append(part_text(part))
        messages.append({"role": item.role, "content": "".join(text)})
    return messages


def _mark(block: SoftBlock, blocks: list[Floats]) -> str:
    """Markers for a block's soft tokens (one per named vector, else one for all), kept in `blocks`."""
    if len(block.names) != len(block.vectors):
        blocks.append(block.vectors)
        return _MARKER.format(len(blocks) - 1)
    marked = []
    for name, vector in zip(block.names, block.vectors, strict=True):
        blocks.append(vector[None, :])
        marked.append(f"{name}: {_MARKER.format(len(blocks) - 1)}")
    return ", ".join(marked)


def _with_tags(description: str, block: SoftBlock, blocks: list[Floats]) -> str:
    """`both`: the picture's tags, and soft tokens for what no tag says; each attribute said once.

    The tags are CLIP's calibrated zero-shot choices over the label set, so where a tag and a soft
    token would name the same attribute, the tag is kept. Shown both, the 0.5B default model answered
    "how many" right 62% of the time instead of 94%. The soft tokens go last: put first, position
    questions fell from 1.00 to 0.29.
    """
    if not description:
        return _mark(block, blocks)
    if len(block.names) != len(block.vectors):
        return f"{description}; {_mark(block, blocks)}"
    tagged = {pair.split(": ", 1)[0] for pair in description.split(", ")}
    keep = [i for i, name in enumerate(block.names) if name not in tagged]
    if not keep:
        return description
    rest = SoftBlock(block.vectors[keep], tuple(block.names[i] for i in keep))
    return f"{description}, {_mark(rest, blocks)}"


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]  # negative ids are soft tokens, their vectors in `vectors`
    dropped_items: int
    vectors: dict[int, Floats] = field(default_factory=dict)


def tokenize_with_soft(
    text: str, blocks: Sequence[Floats], tokenize: Callable[[str], list[int]]
) -> tuple[list[int], dict[int, Floats]]:
    tokens: list[int] = []
    vectors: dict[int, Floats] = {}
    pieces = _MARKER_RE.split(text)  # text, block number, text, block number, ..., text
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            tokens += tokenize(piece) if piece else []
            continue
        block = blocks[int(piece)]
        ids = soft_token_ids(block)
        tokens += ids
        vectors.update(zip(ids, block, strict=True))
    return tokens, vectors


def build_prompt(
    template: ChatTemplate,
    tokenize: Callable[[str], list[int]],
    items: Sequence[MessageItem],
    instructions: str,
    max_tokens: int,
    *,
    mode: FusionMode = "text",
    soft: SoftInputs | None = None,
) -> Prompt | None:
    """Render and tokenize, dropping the oldest items until the prompt fits in `max_tokens`.

    Returns None when even the newest item alone does not fit.
    """
    for dropped in range(max(len(items), 1)):
        blocks: list[Floats] = []
        text = template.render(to_messages(items[dropped:], instructions, mode, soft, blocks))
        tokens, vectors = tokenize_with_soft(text, blocks, tokenize)
        if len(tokens) <= max_tokens:
            return Prompt(tokens, dropped, vectors)
    return None
