"""Tools, calls and their results through a chat template: the template's own way, or as Hermes text."""

import json

import pytest

from gateway.tools.check import check_tools
from shared.errors import InvalidRequest, TooLarge
from shared.messages import FunctionCallItem, FunctionCallOutputItem, FunctionTool, InputText, MessageItem
from workers.decoder.prompt import ChatTemplate, to_messages

WEATHER = FunctionTool(
    name="get_weather",
    description="Current weather",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
# A template that knows tools, in the shape of Qwen2.5's (trimmed).
TOOLS_TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'tool' %}<tool_response>{{ m.content }}</tool_response>\n"
    "{% elif m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function.name }} "
    "{{ c.function.arguments | tojson }}</tool_call>{% endfor %}\n"
    "{% else %}{{ m.role }}: {{ m.content }}\n{% endif %}{% endfor %}"
)


def _history() -> list:
    return [
        MessageItem(role="user", content=[InputText(type="input_text", text="Weather in Paris?")]),
        FunctionCallItem(call_id="call_1", name="get_weather", arguments='{"city": "Paris"}'),
        FunctionCallOutputItem(call_id="call_1", output='{"temp_c": 18}'),
    ]


def test_a_template_that_knows_tools_renders_them_its_way():
    template = ChatTemplate(TOOLS_TEMPLATE, bos_token="", eos_token="")
    assert template.knows_tools and template.knows_tool_calls
    text = template.render(to_messages(_history(), ""), [WEATHER])
    listed = json.loads(text[len("<tools>") : text.index("</tools>")])
    assert listed == {"type": "function", "function": WEATHER.model_dump()}
    assert '<tool_call>get_weather {"city": "Paris"}</tool_call>' in text  # arguments as an object, plain JSON
    assert '<tool_response>{"temp_c": 18}</tool_response>' in text


def test_a_template_without_tools_gets_them_as_hermes_text():
    template = ChatTemplate(None, bos_token="", eos_token="")  # ChatML: no tools
    assert not template.knows_tools and not template.knows_tool_calls
    text = template.render(to_messages(_history(), "Be brief."), [WEATHER])
    system = text[: text.index("<|im_end|>")]
    assert system.startswith("<|im_start|>system\nBe brief.\n\n# Tools") and '"name": "get_weather"' in system
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        in text
    )
    assert '<|im_start|>user\n<tool_response>\n{"temp_c": 18}\n</tool_response><|im_end|>' in text
    assert text.endswith("<|im_start|>assistant\n")


def test_calls_join_the_assistant_message_before_them():
    items = [
        MessageItem(role="assistant", content=[]),
        FunctionCallItem(call_id="a", name="f", arguments="{}"),
        FunctionCallItem(call_id="b", name="g", arguments="not json"),
    ]
    [message] = to_messages(items, "")
    assert [c["id"] for c in message["tool_calls"]] == ["a", "b"]
    assert message["tool_calls"][1]["function"]["arguments"] == "not json"


def _check(tools, choice="auto", max_chars=64_000):
    check_tools(tools, choice, max_chars=max_chars, param="tools")


def test_tools_that_cannot_be_used_are_refused_with_their_param():
    _check([WEATHER], "get_weather")
    _check([WEATHER], "required")
    cases = [
        ([FunctionTool(name="bad name")], "auto", "tools[0].name"),
        ([WEATHER, WEATHER], "auto", "tools[1].name"),
        ([FunctionTool(name="f", parameters={"type": "string"})], "auto", "tools[0].parameters"),
        (
            [
                FunctionTool(
                    name="f", parameters={"type": "object", "properties": {"x": {"type": "array", "maxItems": 10**6}}}
                )
            ],
            "auto",
            "tools[0].parameters",
        ),
        ([WEATHER], "get_time", "tool_choice"),
        ([], "required", "tool_choice"),
    ]
    for tools, choice, param in cases:
        with pytest.raises(InvalidRequest) as caught:
            _check(tools, choice)
        assert caught.value.param == param, (tools, choice)
    with pytest.raises(TooLarge):
        _check([WEATHER], max_chars=100)
