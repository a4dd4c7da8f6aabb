"""The default model, Qwen2.5-Coder-1.5B-Instruct, answers what the 0.5B got wrong (issue: "Answers a user
can trust"), through the official openai SDK over HTTP, with the conversation's history.

The rest of the suite runs the 0.5B model (tests/conftest.py): it checks plumbing, and is three times faster.
"""

from __future__ import annotations

import asyncio

from openai import AsyncOpenAI

from shared.config import DEFAULT_DECODER_MODEL
from tests.helpers import running_stack


async def test_the_default_model_answers_questions_the_small_one_got_wrong(fresh_redis_url, tmp_path):
    with running_stack(fresh_redis_url, tmp_path, audio=0, image=0, decoder_model=DEFAULT_DECODER_MODEL) as stack:
        await asyncio.to_thread(stack.wait_ready, "decode")
        async with AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="not-needed", max_retries=0) as client:
            await _ask_the_questions_the_small_model_got_wrong(client)


async def _ask_the_questions_the_small_model_got_wrong(client: AsyncOpenAI) -> None:
    models = [m.id async for m in client.models.list()]
    assert "qwen2.5-coder-1.5b-instruct" in models, models

    async def ask(messages: list[dict[str, str]]) -> str:
        reply = await client.chat.completions.create(
            model="qwen2.5-coder-1.5b-instruct", messages=messages, temperature=0, max_tokens=24
        )  # type: ignore[arg-type]
        return reply.choices[0].message.content or ""

    # The 0.5B answered "Egypt", "10" and "Mercury", then "Saturn" for the follow-up.
    assert "Cairo" in await ask([{"role": "user", "content": "Capital of Egypt? One word."}])
    legs = await ask([{"role": "user", "content": "How many legs does a spider have? Answer with a number."}])
    assert "8" in legs or "eight" in legs.lower()
    history = [{"role": "user", "content": "Which planet in our solar system is the largest? One word."}]
    first = await ask(history)
    assert "Jupiter" in first
    history += [
        {"role": "assistant", "content": first},
        {"role": "user", "content": "Repeat the name of that planet once more."},
    ]
    assert "Jupiter" in await ask(history)
