"""Tool calls through the whole service with the official openai SDK: Chat Completions (whole and
streamed), several turns with tool results, the Batch API, Realtime function calls, and bad input."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from openai import APIStatusError, AsyncOpenAI, BadRequestError

from tests.e2e.test_batch import finished, read_lines, upload
from tests.helpers import Stack, realtime, user_message

MODEL = "qwen2.5-coder-0.5b-instruct"
WEATHER_ARGS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TIME_ARGS = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "description": "IANA name, e.g. Europe/Paris"}},
    "required": ["timezone"],
    "additionalProperties": False,
}
TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": WEATHER_ARGS,
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "The current time in a timezone.", "parameters": TIME_ARGS},
    },
]
SCHEMAS = {"get_weather": WEATHER_ARGS, "get_time": TIME_ARGS}
WEATHER_Q: Any = [{"role": "user", "content": "What's the weather like in Paris right now?"}]


def _client(stack: Stack) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="not-needed", max_retries=0)


def _valid(name: str, arguments: str) -> dict[str, Any]:
    args = json.loads(arguments)
    jsonschema.validate(args, SCHEMAS[name])
    return args


async def test_a_call_is_made_with_arguments_that_validate(stack: Stack):
    async with _client(stack) as client:
        reply = await client.chat.completions.create(
            model=MODEL, messages=WEATHER_Q, tools=TOOLS, temperature=0, max_tokens=100
        )
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        [call] = choice.message.tool_calls or []
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name == "get_weather"
        assert "paris" in _valid("get_weather", call.function.arguments)["city"].lower()
        # Sampled, several times: the arguments still parse and validate (the grammar holds them).
        for seed in range(3):
            reply = await client.chat.completions.create(
                model=MODEL, messages=WEATHER_Q, tools=TOOLS, temperature=1.0, seed=seed, max_tokens=100
            )
            for call in reply.choices[0].message.tool_calls or []:
                _valid(call.function.name, call.function.arguments)


async def test_streamed_calls_arrive_as_openai_streams_them(stack: Stack):
    async with _client(stack) as client:
        stream = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
            tools=TOOLS,
            tool_choice="required",
            temperature=0,
            max_tokens=100,
            stream=True,
        )
        chunks = [c async for c in stream if c.choices]
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    assert deltas and deltas[0].id and deltas[0].function and deltas[0].function.name == "get_time"
    assert len(deltas) > 2, "the arguments come in pieces"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function)
    assert "tokyo" in _valid("get_time", arguments)["timezone"].lower()
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_a_named_function_is_called_and_none_means_no_call(stack: Stack):
    async with _client(stack) as client:
        named: Any = {"type": "function", "function": {"name": "get_time"}}
        reply = await client.chat.completions.create(
            model=MODEL, messages=WEATHER_Q, tools=TOOLS, tool_choice=named, temperature=0, max_tokens=100
        )
        [call] = reply.choices[0].message.tool_calls or []
        assert call.function.name == "get_time"
        _valid("get_time", call.function.arguments)
        reply = await client.chat.completions.create(
            model=MODEL, messages=WEATHER_Q, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=40
        )
        assert not reply.choices[0].message.tool_calls and reply.choices[0].message.content
        assert reply.choices[0].finish_reason in ("stop", "length")


async def test_a_conversation_with_calls_and_results_goes_on(stack: Stack):
    """History with an assistant's tool_calls and the tool's answer is taken (rendered by the model's own
    template: tests/integration/test_tool_template.py); the reply is text or calls that validate. What the
    small models make of a result is measured by `mmstream eval --suite tools`, not asserted here."""
    history: Any = [
        *WEATHER_Q,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature_c": 31, "sky": "sunny"}'},
        {"role": "user", "content": "And what time is it in Tokyo?"},
    ]
    async with _client(stack) as client:
        reply = await client.chat.completions.create(
            model=MODEL, messages=history, tools=TOOLS, temperature=0, max_tokens=80
        )
    message = reply.choices[0].message
    assert message.content or message.tool_calls
    for call in message.tool_calls or []:
        _valid(call.function.name, call.function.arguments)
    assert reply.usage and reply.usage.prompt_tokens > 150, "the tools and the history are in the prompt"


async def test_bad_tools_are_refused_with_their_param(stack: Stack):
    async with _client(stack) as client:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
            ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].name"),
            (
                {
                    "tools": [
                        {
                            "type": "function",
                            "function": {
                                "name": "f",
                                "parameters": {"type": "object", "properties": {"x": {"type": "no-such"}}},
                            },
                        }
                    ]
                },
                "tools",
            ),
            (
                {"messages": [*WEATHER_Q, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]},
                "messages[1].tool_call_id",
            ),
        ]
        for extra, param in cases:
            kwargs: Any = {"model": MODEL, "messages": WEATHER_Q, "tools": TOOLS, "max_tokens": 20, **extra}
            with pytest.raises(BadRequestError) as caught:
                await client.chat.completions.create(**kwargs)
            assert caught.value.param == param, (extra, caught.value)
        huge: Any = [
            {"type": "function", "function": {"name": f"f{i}", "description": "x" * 2000, "parameters": WEATHER_ARGS}}
            for i in range(40)
        ]
        with pytest.raises(APIStatusError) as caught:
            await client.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=huge)
        assert caught.value.status_code == 413
        # The service goes on.
        reply = await client.chat.completions.create(model=MODEL, messages=WEATHER_Q, tools=TOOLS, max_tokens=60)
        assert reply.choices[0].message.tool_calls or reply.choices[0].message.content


async def test_a_batch_line_with_tools(stack: Stack):
    body = {"model": MODEL, "messages": WEATHER_Q, "tools": TOOLS, "tool_choice": "required", "temperature": 0}
    line = json.dumps({"custom_id": "w", "method": "POST", "url": "/v1/chat/completions", "body": body})
    async with _client(stack) as client:
        batch = await client.batches.create(
            input_file_id=await upload(client, [line]), endpoint="/v1/chat/completions", completion_window="24h"
        )
        batch = await finished(client, batch.id)
        out = await read_lines(client, batch.output_file_id)
    choice = out["w"]["response"]["body"]["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    _valid(call["function"]["name"], call["function"]["arguments"])


REALTIME_TOOLS = [
    {
        "type": "function",
        "name": t["function"]["name"],
        "description": t["function"]["description"],
        "parameters": t["function"]["parameters"],
    }
    for t in TOOLS
]


async def test_realtime_function_call_then_its_output_answers(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send({"type": "session.update", "session": {"type": "realtime", "tools": REALTIME_TOOLS}})
        await rt.until("session.updated")
        await rt.send(user_message("What's the weather like in Paris right now?"))
        await rt.send({"type": "response.create", "response": {"tool_choice": "required"}})
        events = await rt.until("response.done")
        kinds = [e["type"] for e in events]
        added = next(
            e for e in events if e["type"] == "response.output_item.added" and e["item"]["type"] == "function_call"
        )
        done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
        deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
        assert kinds.index("response.output_item.added") < kinds.index("response.function_call_arguments.delta")
        assert (
            done["name"] == "get_weather"
            and done["arguments"] == deltas
            and done["call_id"] == added["item"]["call_id"]
        )
        _valid("get_weather", done["arguments"])
        output = events[-1]["response"]["output"]
        call = next(o for o in output if o["type"] == "function_call")
        assert call["status"] == "completed" and call["arguments"] == done["arguments"]

        # An output for a call that was never made is refused; the session goes on.
        await rt.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "call_nope", "output": "1"},
            }
        )
        error = (await rt.until("error"))[-1]
        assert error["error"]["param"] == "item.call_id"

        result = {
            "type": "function_call_output",
            "call_id": done["call_id"],
            "output": '{"temperature_c": 31, "sky": "sunny"}',
        }
        await rt.send({"type": "conversation.item.create", "item": result})
        await rt.until("conversation.item.added")
        text, final = await rt.ask_response()
    # The reply reads the result (what the small models make of it: `mmstream eval --suite tools`).
    assert final["response"]["status"] == "completed"
    assert text or any(o["type"] == "function_call" for o in final["response"]["output"])
    first = events[-1]["response"]["usage"]["input_tokens"]
    assert final["response"]["usage"]["input_tokens"] > first + 15, "the call and its output are in the prompt"


async def test_a_spoken_session_calls_tools_without_speaking_them(stack: Stack):
    spoken = {"type": "realtime", "output_modalities": ["audio"], "tools": REALTIME_TOOLS, "tool_choice": "required"}
    async with realtime(stack.ws) as rt:
        await rt.send({"type": "session.update", "session": spoken})
        await rt.until("session.updated")
        await rt.send(user_message("What time is it in Tokyo?"))
        await rt.send({"type": "response.create"})
        events = await rt.until("response.done")
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["name"] == "get_time"
    _valid("get_time", done["arguments"])
    transcript = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    assert "tool_call" not in transcript and "{" not in transcript, "a call is not read aloud"
    assert events[-1]["response"]["status"] == "completed"
