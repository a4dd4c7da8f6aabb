import numpy as np

from shared.messages import InputImage, InputText, MessageItem, OutputText
from workers.decoder.prompt import ChatTemplate, SoftBlock, build_prompt, to_messages


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


def _picture_item() -> MessageItem:
    return MessageItem(
        id="item_1",
        role="user",
        content=[
            InputImage(type="input_image", description="a red circle"),
            InputText(type="input_text", text="what is it"),
        ],
    )


def _chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def test_embed_mode_puts_soft_tokens_in_the_pictures_place():
    template = ChatTemplate(None, bos_token="", eos_token="")
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    prompt = build_prompt(
        template, _chars, [_picture_item()], "", max_tokens=1000, mode="embed", soft={("item_1", 0): SoftBlock(vectors)}
    )
    assert prompt is not None
    soft = [t for t in prompt.tokens if t < 0]
    assert len(soft) == 2 and [prompt.vectors[t].tolist() for t in soft] == vectors.tolist()
    first = prompt.tokens.index(soft[0])
    assert "".join(map(chr, prompt.tokens[:first])).endswith("user\n[Picture: ")
    assert "".join(map(chr, prompt.tokens[first + 2 :])).startswith("]\nwhat is it")
    assert "red circle" not in "".join(chr(t) for t in prompt.tokens if t >= 0)


def test_both_mode_adds_the_description_and_text_mode_ignores_vectors():
    template = ChatTemplate(None, bos_token="", eos_token="")
    soft = {("item_1", 0): SoftBlock(np.ones((2, 3), dtype=np.float32))}
    both = build_prompt(template, _chars, [_picture_item()], "", max_tokens=1000, mode="both", soft=soft)
    text = build_prompt(template, _chars, [_picture_item()], "", max_tokens=1000, mode="text", soft=soft)
    assert both is not None and text is not None
    assert sum(t < 0 for t in both.tokens) == 2 and "a red circle; " in "".join(chr(t) for t in both.tokens if t >= 0)
    assert all(t >= 0 for t in text.tokens) and "[Picture: a red circle]" in "".join(map(chr, text.tokens))


def test_a_picture_without_vectors_falls_back_to_its_description():
    template = ChatTemplate(None, bos_token="", eos_token="")
    prompt = build_prompt(template, _chars, [_picture_item()], "", max_tokens=1000, mode="embed", soft={})
    assert prompt is not None and all(t >= 0 for t in prompt.tokens)
    assert "[Picture: a red circle]" in "".join(map(chr, prompt.tokens))


def test_named_soft_tokens_are_each_introduced_by_their_name():
    template = ChatTemplate(None, bos_token="", eos_token="")
    block = SoftBlock(np.eye(2, 3, dtype=np.float32), names=("colour", "shape"))
    prompt = build_prompt(
        template, _chars, [_picture_item()], "", max_tokens=1000, mode="embed", soft={("item_1", 0): block}
    )
    assert prompt is not None
    shown = "".join(chr(t) if t >= 0 else "#" for t in prompt.tokens)
    assert "[Picture: colour: #, shape: #]\nwhat is it" in shown


def test_both_mode_keeps_the_tags_and_adds_soft_tokens_for_what_they_do_not_say():
    template = ChatTemplate(None, bos_token="", eos_token="")
    item = MessageItem(
        id="item_1",
        role="user",
        content=[InputImage(type="input_image", description="colour: red, shape: circle, background: white")],
    )
    block = SoftBlock(np.eye(3, 3, dtype=np.float32), names=("colour", "shape", "position"))
    prompt = build_prompt(template, _chars, [item], "", max_tokens=1000, mode="both", soft={("item_1", 0): block})
    assert prompt is not None
    shown = "".join(chr(t) if t >= 0 else "#" for t in prompt.tokens)
    assert "[Picture: colour: red, shape: circle, background: white, position: #]" in shown
    assert [v.tolist() for v in prompt.vectors.values()] == [[0.0, 0.0, 1.0]]


def test_a_models_own_picture_goes_in_bare_between_its_marker_tokens():
    template = ChatTemplate(None, bos_token="", eos_token="")
    block = SoftBlock(np.ones((2, 3), dtype=np.float32), layout=(7001, -1, -1, 7002, 7003), native=True)
    for mode in ("embed", "both"):
        prompt = build_prompt(
            template, _chars, [_picture_item()], "", max_tokens=1000, mode=mode, soft={("item_1", 0): block}
        )  # type: ignore[arg-type]
        assert prompt is not None
        shown = "".join(chr(t) if 0 <= t < 7000 else "#" if t < 0 else f"<{t}>" for t in prompt.tokens)
        assert "user\n<7001>##<7002><7003>what is it" in shown, mode


def test_a_picture_in_tiles_has_each_tiles_tokens_between_its_marks():
    template = ChatTemplate(None, bos_token="", eos_token="")
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)  # two tiles of two
    layout = (7001, -1, -1, 7002, 7003, -1, -1, 7004)
    block = SoftBlock(vectors, layout=layout, native=True, causal=False)
    prompt = build_prompt(
        template, _chars, [_picture_item()], "", max_tokens=1000, mode="embed", soft={("item_1", 0): block}
    )  # type: ignore[arg-type]
    assert prompt is not None
    shown = "".join(chr(t) if 0 <= t < 7000 else "#" if t < 0 else f"<{t}>" for t in prompt.tokens)
    assert "user\n<7001>##<7002><7003>##<7004>what is it" in shown
    soft = [t for t in prompt.tokens if t < 0]
    assert [prompt.vectors[t].tolist() for t in soft] == vectors.tolist()  # in order
    assert prompt.both_ways == frozenset(soft)
