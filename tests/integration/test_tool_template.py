"""Tools through the real model's chat template and the real grammar sampler (the bundled Qwen2.5 GGUF).

The template stored in the GGUF writes the tools, the calls and their results its own way; a tool call's
grammar waits for its trigger, then holds the call to its schema; a reply that only looks like the start
of a call (a bare "{}") leaves the reply free instead of killing the process (llama.cpp's own lazy
grammar throws there).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import jsonschema
import pytest

from shared.config import Settings
from shared.messages import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    GenerateRequest,
    InputText,
    MessageItem,
    OutputFormat,
)
from shared.models import resolve_model
from workers.decoder.engine import Done, Engine, Job, Token
from workers.decoder.grammar import reply_grammar
from workers.decoder.llama import ContextConfig, LlamaModel
from workers.decoder.prompt import ChatTemplate, build_prompt, to_messages

ARGS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
WEATHER = FunctionTool(name="get_forecast", description="The weather forecast for a city.", parameters=ARGS)


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaModel]:
    s = Settings()
    m = LlamaModel(
        resolve_model(s.decoder_model, s.models_dir).path,
        ContextConfig(n_ctx_per_seq=2048, n_seq=1, n_batch=512, n_threads=2, n_gpu_layers=0),
    )
    yield m
    m.close()


@pytest.fixture(scope="module")
def template(model: LlamaModel) -> ChatTemplate:
    return ChatTemplate(
        model.meta("tokenizer.chat_template"),
        bos_token=model.special_token("bos"),
        eos_token=model.special_token("eos"),
    )


def _user(text: str) -> MessageItem:
    return MessageItem(role="user", content=[InputText(type="input_text", text=text)])


def test_qwens_template_writes_tools_calls_and_results(template: ChatTemplate):
    assert template.knows_tools and template.knows_tool_calls
    items = [
        _user("Forecast for Oslo?"),
        FunctionCallItem(call_id="c1", name="get_forecast", arguments='{"city": "Oslo", "days": 2}'),
        FunctionCallOutputItem(call_id="c1", output="rain, 9 C"),
    ]
    text = template.render(to_messages(items, "Be brief."), [WEATHER])
    assert "<tools>\n" + json.dumps({"type": "function", "function": WEATHER.model_dump()}) in text
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_forecast", "arguments": {"city": "Oslo", "days": 2}}' in text
    )
    assert "<|im_start|>user\n<tool_response>\nrain, 9 C\n</tool_response><|im_end|>" in text


def _reply(
    model: LlamaModel, template: ChatTemplate, choice: str, *, resume: str = "", temperature: float = 0.0
) -> str:
    request = GenerateRequest(
        response_id="r",
        session_id="s",
        item_ids=[],
        temperature=temperature,
        top_p=0.95,
        max_output_tokens=60,
        tools=[WEATHER],
        tool_choice=choice,
    )
    prompt = build_prompt(
        template, model.tokenize, [_user("Weather in Oslo for the next 3 days?")], "", 1500, tools=[WEATHER]
    )
    assert prompt is not None
    engine = Engine(model)
    try:
        job = Job(
            prompt=prompt.tokens,
            resume=model.tokenize(resume) if resume else [],
            vectors={},
            grammar=reply_grammar(request),
            max_new_tokens=60,
            temperature=temperature,
            top_p=0.95,
            seed=7,
            deadline=time.monotonic() + 60,
        )
        engine.submit(job)
        out = [resume]
        while not isinstance(event := job.events.get(timeout=60), Done):
            assert isinstance(event, Token)
            out.append(event.text)
        assert event.status in ("completed", "incomplete"), event
        return "".join(out)
    finally:
        engine.stop()


def _call(reply: str) -> dict:
    body = reply.strip().removeprefix("<tool_call>").removesuffix("</tool_call>").strip()
    while body.startswith("{{"):
        body = body[1:-1].strip()
    return json.loads(body)


@pytest.mark.parametrize("temperature", [0.0, 1.5])
def test_a_required_call_always_validates(model: LlamaModel, template: ChatTemplate, temperature: float):
    call = _call(_reply(model, template, "required", temperature=temperature))
    assert call["name"] == "get_forecast"
    jsonschema.validate(call["arguments"], ARGS)


def test_a_started_call_is_held_to_its_schema(model: LlamaModel, template: ChatTemplate):
    # The reply begins a call by itself (auto): from the trigger on, the grammar holds it.
    reply = _reply(
        model, template, "auto", resume='<tool_call>\n{"name": "get_forecast", "arguments": {"city": "Oslo", "days": '
    )
    jsonschema.validate(_call(reply)["arguments"], ARGS)


def test_a_reply_that_only_looks_like_a_call_stays_free(model: LlamaModel, template: ChatTemplate):
    reply = _reply(model, template, "auto", resume="{} is an empty object. ")
    assert reply.startswith("{} is an empty object.")  # and the process is still here


def test_tools_with_a_response_format_make_one_grammar(model: LlamaModel, template: ChatTemplate):
    # auto with a response_format: the reply is calls or the answer the schema describes.
    answer = OutputFormat(type="json_schema", json_schema={"type": "object", "properties": {"a": {"type": "integer"}}})
    for choice in ("auto", "required", "get_forecast"):
        request = GenerateRequest(
            response_id="r",
            session_id="s",
            item_ids=[],
            temperature=0,
            top_p=1,
            max_output_tokens=8,
            tools=[WEATHER],
            tool_choice=choice,
            output_format=answer,
            parallel_tool_calls=False,
        )
        grammar = reply_grammar(request)
        assert grammar is not None and not grammar.triggers
        assert model.grammar_error(grammar) is None, choice
