"""The reply's text split into what it says and the tool calls it makes, however it is cut into deltas."""

import json

import pytest

from gateway.tools.calls import CallArguments, CallDone, CallStarted, Event, Text, ToolCallReader

QWEN = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def _read(text: str, step: int) -> list[Event]:
    reader = ToolCallReader()
    events: list[Event] = []
    for i in range(0, len(text), step):
        events += reader.push(text[i : i + step])
    return events + reader.finish()


def _summary(events: list[Event]) -> tuple[str, list[tuple[str, str]], dict[int, str]]:
    """(text, [(name, arguments)], streamed arguments per call index)"""
    text = "".join(e.text for e in events if isinstance(e, Text))
    calls = [(e.name, e.arguments) for e in events if isinstance(e, CallDone)]
    streamed: dict[int, str] = {}
    for e in events:
        if isinstance(e, CallArguments):
            streamed[e.index] = streamed.get(e.index, "") + e.delta
    return text, calls, streamed


STEPS = [1, 2, 5, 1000]


@pytest.mark.parametrize("step", STEPS)
def test_plain_text_passes_through(step):
    assert _summary(_read("The capital is Paris. 2 < 3 and <b>.", step))[:2] == (
        "The capital is Paris. 2 < 3 and <b>.",
        [],
    )


@pytest.mark.parametrize("step", STEPS)
def test_a_tagged_call_streams_its_name_then_its_arguments(step):
    events = _read(QWEN, step)
    text, calls, streamed = _summary(events)
    assert text == "" and calls == [("get_weather", '{"city": "Paris"}')]
    assert streamed == {0: '{"city": "Paris"}'}
    started = [e for e in events if isinstance(e, CallStarted)]
    assert len(started) == 1 and started[0].call_id.startswith("call_")
    assert events.index(started[0]) < min(events.index(e) for e in events if isinstance(e, CallArguments))


@pytest.mark.parametrize("step", STEPS)
def test_text_then_two_calls_with_braces_in_strings(step):
    second = '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>'
    reply = 'Let me look.\n<tool_call>\n{"name": "a", "arguments": {"q": "}{\\"]"}}\n</tool_call>\n' + second
    text, calls, _ = _summary(_read(reply, step))
    assert text == "Let me look."
    assert calls == [("a", '{"q": "}{\\"]"}'), ("b", "{}")]
    assert json.loads(calls[0][1]) == {"q": '}{"]'}


@pytest.mark.parametrize("step", STEPS)
def test_fenced_and_bare_calls_at_the_start_are_read(step):
    fenced = '```json\n{"name": "get_time", "arguments": {"timezone": "Asia/Tokyo"}}\n```'
    assert _summary(_read(fenced, step))[:2] == ("", [("get_time", '{"timezone": "Asia/Tokyo"}')])
    out_of_order = '{"arguments": {"q": 1}, "name": "f"}'
    assert _summary(_read(out_of_order, step))[:2] == ("", [("f", '{"q": 1}')])


@pytest.mark.parametrize("step", STEPS)
def test_json_or_code_that_is_no_call_stays_text(step):
    for reply in ['{"a": 1}', "```python\nprint({1: 2})\n```", 'Use {"name": "x"} in code.']:
        assert _summary(_read(reply, step))[:2] == (reply, [])


@pytest.mark.parametrize("step", STEPS)
def test_a_reply_cut_inside_a_call_tells_what_it_has(step):
    text, calls, _ = _summary(_read('<tool_call>\n{"name": "f", "arguments": {"x": 1', step))
    assert text == "" and calls == [("f", '{"x": 1')]
    assert _summary(_read("<tool_call>\n{", step))[:2] == ("<tool_call>\n{", [])


def test_call_indexes_count_only_calls():
    reader = ToolCallReader()
    events = reader.push('{"a": 1}') + reader.push("\n" + QWEN) + reader.finish()
    assert [e.index for e in events if isinstance(e, CallDone)] == [0]
    assert reader.calls == 1


@pytest.mark.parametrize("step", STEPS)
def test_a_call_in_double_braces_as_qwens_template_shows_it(step):
    for reply in [
        '{{"name": "f", "arguments": {"x": 1}}}',
        '<tool_call>\n{{"name": "f", "arguments": {"x": 1}}}\n</tool_call>',
    ]:
        assert _summary(_read(reply, step))[:2] == ("", [("f", '{"x": 1}')])
