"""Many conversations on one decoder process: their own answers, cancelled alone, the rest waiting in Redis."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from tests.helpers import Realtime, Stack, realtime, running_stack, user_message, wait_for

CAPITALS = {"France": "Paris", "Italy": "Rome", "Japan": "Tokyo", "Germany": "Berlin"}
COUNT = "Count from 1 to 60, separated by commas, with no other text."


def _numbers(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", text)]


async def _ask(rt: Realtime, question: str, max_tokens: int = 24) -> tuple[str, dict[str, Any], float, float]:
    """Send a question; the reply's text, its response.done, and when it started and ended."""
    await rt.send(user_message(question))
    await rt.send({"type": "response.create", "response": {"max_output_tokens": max_tokens}})
    started = time.monotonic()
    events = await rt.until("response.done", timeout=180)
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    return text, events[-1]["response"], started, time.monotonic()


async def _conversation(url: str, question: str, max_tokens: int = 24) -> tuple[str, dict[str, Any], float, float]:
    async with realtime(url) as rt:
        return await _ask(rt, question, max_tokens)


async def test_concurrent_conversations_each_get_their_own_answer(stack: Stack):
    questions = {c: f"What is the capital of {c}? Answer in one word." for c in CAPITALS}
    replies = await asyncio.gather(*(_conversation(stack.ws, q) for q in questions.values()))
    for (country, city), (text, done, _, _) in zip(CAPITALS.items(), replies, strict=True):
        assert done["status"] == "completed"
        assert city in text, (country, text)
        assert not any(other in text for other in CAPITALS.values() if other != city), text  # no cross-talk
    # They ran at once (the decoder serves 4), not one after another.
    assert max(start for *_, start, _ in replies) < min(end for *_, end in replies)


async def test_cancelling_one_leaves_the_others_intact(stack: Stack):
    async def counted() -> str:
        text, done, _, _ = await _conversation(stack.ws, COUNT, max_tokens=200)
        assert done["status"] == "completed", done
        return text

    others = [asyncio.create_task(counted()) for _ in range(2)]
    async with realtime(stack.ws) as rt:
        await rt.send(user_message(COUNT))
        await rt.send({"type": "response.create", "response": {"max_output_tokens": 200}})
        deltas, rid = 0, ""
        while deltas < 10:
            event = await rt.next()
            rid = event["response"]["id"] if event["type"] == "response.created" else rid
            deltas += event["type"] == "response.output_text.delta"
        await rt.send({"type": "response.cancel", "response_id": rid})
        done = (await rt.until("response.done"))[-1]
        assert done["response"]["status"] == "cancelled"
        text, after, _, _ = await _ask(rt, "What is the capital of Italy? Answer in one word.")
        assert after["status"] == "completed" and "Rome" in text  # the cancelled slot serves again
    for text in await asyncio.gather(*others):
        numbers = _numbers(text)
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 40, text


async def test_an_overlong_conversation_ends_incomplete_with_a_reason(stack: Stack):
    async with realtime(stack.ws) as rt:
        long_text = "The quick brown fox jumps over the lazy dog. " * 300  # about 3000 tokens > n_ctx 2048
        text, done, _, _ = await _ask(rt, long_text + "How many foxes were there?")
        assert done["status"] == "incomplete", done
        assert done["status_details"]["reason"] == "context_length_exceeded"
        text, done, _, _ = await _ask(rt, "What is the capital of France? Answer in one word.")
        assert done["status"] == "completed" and "Paris" in text  # older turns are dropped to fit; it goes on


async def test_requests_beyond_the_concurrency_wait_in_redis(fresh_redis_url, tmp_path):
    with running_stack(fresh_redis_url, tmp_path, decoders=1, audio=0, image=0, decoder_concurrency="2") as stack:
        client = stack.redis()
        count = "Count from 1 to 20, separated by commas, with no other text."
        replies = [asyncio.create_task(_conversation(stack.ws, count, max_tokens=80)) for _ in range(4)]
        # Two run; the other two are messages in the broker's queue, not tasks held by the worker.
        await asyncio.to_thread(
            wait_for, lambda: client.llen("decode") + client.llen("decode\x06\x169") == 2, 60, "two queued"
        )
        states = [k for k in client.keys("mmtest:response:*") if k.count(":") == 2]
        running = [k for k in states if client.hget(k, "status") == "running"]
        assert len(running) == 2, running
        for text, done, _, _ in await asyncio.gather(*replies):
            assert done["status"] == "completed" and _numbers(text) == list(range(1, 21)), text
        assert client.llen("decode") == 0
