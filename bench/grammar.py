"""Structured output's cost: decoding under a JSON grammar against the same requests without, in one run.

Through the whole service (gateway, one decoder, the 0.5B model): the same prompts, greedy, one at a time
and four at once, with `response_format` json_schema (a small object schema), json_object, and none.
Prints generated tokens/s and the ratio to no grammar. Run: python -m bench.grammar
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from openai import AsyncOpenAI

from bench.stack import bench_stack
from shared.config import SMALL_DECODER_MODEL

PROMPTS = [
    "Describe the city of Paris for a travel guide.",
    "Describe the planet Mars for a school book.",
    "Describe a cat for a children's encyclopedia.",
    "Describe the river Nile for an atlas.",
]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "summary": {"type": "string"},
        "facts": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "summary", "facts"],
}
FORMATS: dict[str, Any] = {
    "none": None,
    "json_object": {"type": "json_object"},
    "json_schema": {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA}},
}


async def _one(client: AsyncOpenAI, model: str, prompt: str, fmt: Any) -> int:
    extra: dict[str, Any] = {"response_format": fmt} if fmt else {}
    reply = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=128, **extra
    )
    assert reply.usage is not None
    return reply.usage.completion_tokens


async def _run(url: str, model: str, fmt: Any, at_once: int) -> float:
    async with AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        started, tokens = time.perf_counter(), 0
        for i in range(0, len(PROMPTS), at_once):
            tokens += sum(await asyncio.gather(*(_one(client, model, p, fmt) for p in PROMPTS[i : i + at_once])))
        return tokens / (time.perf_counter() - started)


def main() -> None:
    model = "qwen2.5-coder-0.5b-instruct"
    with bench_stack({"decode": 1}, decoder_model=SMALL_DECODER_MODEL) as stack:
        asyncio.run(_run(stack.http, model, None, 1))  # warm up
        print("| response_format | 1 at a time, tokens/s | ratio | 4 at once, tokens/s | ratio |")
        print("|---|---|---|---|---|")
        rates: dict[tuple[str, int], float] = {}
        for _ in range(2):  # alternate, twice, and keep the better of each
            for name, fmt in FORMATS.items():
                for at_once in (1, 4):
                    rate = asyncio.run(_run(stack.http, model, fmt, at_once))
                    rates[(name, at_once)] = max(rates.get((name, at_once), 0.0), rate)
        for name in FORMATS:
            one, four = rates[(name, 1)], rates[(name, 4)]
            base1, base4 = rates[("none", 1)], rates[("none", 4)]
            print(f"| {name} | {one:.1f} | {one / base1:.2f}x | {four:.1f} | {four / base4:.2f}x |")


if __name__ == "__main__":
    main()
