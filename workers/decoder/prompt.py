"""Conversation items -> prompt tokens, through the model's own chat template.

The template is the Jinja text stored in the GGUF (`tokenizer.chat_template`), rendered in a
sandbox as Hugging Face and llama.cpp do. When the conversation is longer than the context allows,
the oldest turns are left out (the Realtime API's `truncation: auto`); instructions always stay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.messages import MessageItem

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


def to_messages(items: Sequence[MessageItem], instructions: str) -> list[ChatMessage]:
    messages = [{"role": "system", "content": instructions}] if instructions else []
    messages += [{"role": item.role, "content": item.text()} for item in items]
    return messages


@dataclass(frozen=True)
class Prompt:
    tokens: list[int]
    dropped_items: int


def build_prompt(
    template: ChatTemplate,
    tokenize: Callable[[str], list[int]],
    items: Sequence[MessageItem],
    instructions: str,
    max_tokens: int,
) -> Prompt | None:
    """Render and tokenize, dropping the oldest items until the prompt fits in `max_tokens`.

    Returns None when even the newest item alone does not fit.
    """
    for dropped in range(max(len(items), 1)):
        tokens = tokenize(template.render(to_messages(items[dropped:], instructions)))
        if len(tokens) <= max_tokens:
            return Prompt(tokens, dropped)
    return None
