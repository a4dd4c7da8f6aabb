"""POST /v1/chat/completions through the whole service, with the official openai SDK and raw HTTP."""

import asyncio
import base64
import json

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from tests.helpers import Stack
from tests.pictures import data_url, picture
from tests.speech import silence, speak, wav_bytes

MODEL = "qwen2.5-coder-0.5b-instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture
async def client(stack: Stack):
    async with AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="not-needed", max_retries=0) as c:
        yield c


async def test_a_whole_answer_with_usage(stack: Stack, client: AsyncOpenAI):
    reply = await client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl")
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens > 5 and reply.usage.completion_tokens >= 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


async def test_a_streamed_answer_ends_with_usage(stack: Stack, client: AsyncOpenAI):
    stream = await client.chat.completions.create(
        model=MODEL, messages=FRANCE, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


async def test_limits_stop_sequences_and_system_messages(stack: Stack, client: AsyncOpenAI):
    counting = [
        {"role": "system", "content": "You only ever answer with numbers."},
        {"role": "user", "content": "Count from 1 to 20, separated by commas."},
    ]
    short = await client.chat.completions.create(model=MODEL, messages=counting, temperature=0, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage and short.usage.completion_tokens == 3
    cut = await client.chat.completions.create(model=MODEL, messages=counting, temperature=0, stop=[","])
    text = cut.choices[0].message.content or ""
    assert cut.choices[0].finish_reason == "stop" and text.strip() and "," not in text
    assert cut.usage is not None and cut.usage.completion_tokens < 10, "generation went on after the stop"


async def test_a_picture_and_speech_in_messages(stack: Stack, client: AsyncOpenAI):
    image = {"type": "image_url", "image_url": {"url": data_url(picture("circle", "red"))}}
    ask = {"type": "text", "text": "What colour is the shape in the picture? Answer with one word."}
    seen = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [image, ask]}], temperature=0
    )
    assert "red" in (seen.choices[0].message.content or "").lower()
    wav = base64.b64encode(wav_bytes(speak("What is the capital of France?") + silence(0.3))).decode()
    audio = {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}
    heard = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": [audio]}], temperature=0
    )
    assert "Paris" in (heard.choices[0].message.content or "")


async def test_errors_use_the_openai_error_object(stack: Stack, client: AsyncOpenAI):
    with pytest.raises(openai.BadRequestError) as bad_n:
        await client.chat.completions.create(model=MODEL, messages=FRANCE, n=2)
    assert bad_n.value.body["param"] == "n"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.chat.completions.create(model="gpt-9", messages=FRANCE)
    assert unknown.value.body["code"] == "model_not_found"  # type: ignore[index]
    async with httpx.AsyncClient(base_url=stack.http) as http:
        empty = await http.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
        assert empty.status_code == 400 and empty.json()["error"]["param"] == "messages"
        broken = await http.post(
            "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert broken.status_code == 400 and "error" in broken.json()
        bad_image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
        picture_error = await http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": [bad_image]}]}
        )
        assert picture_error.status_code == 400 and picture_error.json()["error"]["type"] == "invalid_request_error"
        models = (await http.get("/v1/models")).json()
        assert MODEL in [m["id"] for m in models["data"]]


async def test_a_client_that_goes_away_stops_the_generation(stack: Stack):
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count from 1 to 300, one number per line."}],
        "stream": True,
        "temperature": 0,
    }
    async with (
        httpx.AsyncClient(base_url=stack.http, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        lines = response.aiter_lines()
        first = json.loads((await anext(lines)).removeprefix("data: "))
        for _ in range(6):
            await anext(lines)
    state_key = f"mmtest:response:{first['id']}"
    client = stack.redis()
    for _ in range(50):
        if client.hget(state_key, "status") in (b"cancelled", "cancelled"):
            break
        await asyncio.sleep(0.1)
    assert client.hget(state_key, "status") in (b"cancelled", "cancelled")
