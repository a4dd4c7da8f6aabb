"""Structured output through the whole service: replies under a JSON grammar always parse (and validate)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from openai import AsyncOpenAI, BadRequestError

from tests.helpers import Stack

MODEL = "qwen2.5-coder-0.5b-instruct"
CITY = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "country": {"type": "string"},
        "population_millions": {"type": "number"},
        "rivers": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["city", "country", "population_millions", "rivers"],
    "additionalProperties": False,
}


def _client(stack: Stack) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="not-needed", max_retries=0)


async def test_json_schema_replies_parse_and_validate(stack: Stack):
    async with _client(stack) as client:
        messages: Any = [{"role": "user", "content": "Describe Paris: its country, population and rivers."}]
        fmt: Any = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY, "strict": True}}
        for temperature in (0.0, 1.0):
            reply = await client.chat.completions.create(
                model=MODEL, messages=messages, response_format=fmt, temperature=temperature, max_tokens=200
            )
            data = json.loads(reply.choices[0].message.content or "")
            jsonschema.validate(data, CITY)
        assert data["city"]
        stream = await client.chat.completions.create(
            model=MODEL, messages=messages, response_format=fmt, temperature=0, max_tokens=200, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        jsonschema.validate(json.loads(text), CITY)


async def test_json_object_replies_parse(stack: Stack):
    async with _client(stack) as client:
        messages: Any = [{"role": "user", "content": "Name three fruits and their colours."}]
        reply = await client.chat.completions.create(
            model=MODEL, messages=messages, response_format={"type": "json_object"}, max_tokens=150, temperature=0.7
        )
        assert isinstance(json.loads(reply.choices[0].message.content or ""), dict)


async def test_a_schema_that_cannot_be_compiled_is_refused_with_its_param(stack: Stack):
    async with _client(stack) as client:
        bad: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "no-such-type"}}}
        with pytest.raises(BadRequestError) as caught:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], response_format=bad
            )
        assert caught.value.param == "response_format.json_schema.schema"
