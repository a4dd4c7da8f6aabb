from shared.messages import InputText, MessageItem, OutputText
from workers.decoder.prompt import ChatTemplate, build_prompt, to_messages


def _item(role: str, text: str) -> MessageItem:
    part = OutputText(type="output_text", text=text) if role == "assistant" else InputText(type="input_text", text=text)
    return MessageItem(role=role, content=[part])  # type: ignore[arg-type]


def _words(text: str) -> list[int]:
    return [len(w) for w in text.split()]


def test_chatml_fallback_renders_roles_and_generation_prompt():
    template = ChatTemplate(None, bos_token="", eos_token="")
    text = template.render(to_messages([_item("user", "hi")], "be brief"))
    assert text == "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_oldest_turns_are_dropped_to_fit_but_instructions_stay():
    template = ChatTemplate(None, bos_token="", eos_token="")
    items = [_item("user", "one two three four"), _item("assistant", "five six"), _item("user", "seven")]
    full = build_prompt(template, _words, items, "sys", max_tokens=100)
    assert full is not None and full.dropped_items == 0
    trimmed = build_prompt(template, _words, items, "sys", max_tokens=len(full.tokens) - 1)
    assert trimmed is not None and trimmed.dropped_items >= 1
    assert build_prompt(template, _words, items, "sys", max_tokens=2) is None


def test_empty_conversation_still_renders():
    template = ChatTemplate(None, bos_token="", eos_token="")
    prompt = build_prompt(template, _words, [], "sys", max_tokens=100)
    assert prompt is not None and prompt.tokens
