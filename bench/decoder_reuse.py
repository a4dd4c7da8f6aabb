"""What reusing a conversation's KV cache saves on its next turn, through the whole path.

A conversation of `--turns` questions and answers is held in one session; then one more question
is asked (warm: the decoder still holds the history's KV and evaluates only what is new). The same
history is then replayed into a new session whose instructions differ in their first words, so no
cached prefix matches, and the same question asked (cold: the whole history is evaluated). Time to
first token and the prompt and cached token counts of both are printed, with the ratio.

    python -m bench.decoder_reuse [--turns 6] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

import websockets

from bench.stack import bench_stack

QUESTIONS = [
    "What is a hash map?",
    "How does it handle collisions?",
    "What is its time complexity?",
    "How does a tree map differ?",
    "When would you pick one over the other?",
    "Give a Python example of each.",
    "How do they behave with many deletions?",
    "Summarise our discussion.",
]
LAST = "What is the most important point of all this?"


async def _send(ws: Any, event: dict[str, Any]) -> None:
    await ws.send(json.dumps(event))


async def _turn(ws: Any, text: str, max_tokens: int) -> tuple[str, float, dict[str, Any]]:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await _send(ws, {"type": "conversation.item.create", "item": item})
    start = time.perf_counter()
    await _send(ws, {"type": "response.create", "response": {"max_output_tokens": max_tokens}})
    first, reply = None, ""
    while True:
        event = json.loads(await ws.recv())
        if event["type"] == "response.output_text.delta":
            first = first or time.perf_counter() - start
            reply += event["delta"]
        elif event["type"] == "response.done":
            return reply, first or float("nan"), event["response"]["usage"]


async def _session(url: str, instructions: str) -> Any:
    ws = await websockets.connect(url, max_size=None)
    await ws.recv()
    await _send(
        ws, {"type": "session.update", "session": {"type": "realtime", "temperature": 0, "instructions": instructions}}
    )
    return ws


async def _once(url: str, turns: int, max_tokens: int, n: int) -> tuple[float, dict[str, Any], float, dict[str, Any]]:
    warm = await _session(url, f"Conversation {n}. You are a helpful assistant.")
    history = []
    for question in QUESTIONS[:turns]:
        reply, _, _ = await _turn(warm, question, max_tokens)
        history.append((question, reply))
    _, warm_ttft, warm_usage = await _turn(warm, LAST, 1)
    await warm.close()

    cold = await _session(url, f"Replay {n}. You are a helpful assistant.")
    for question, reply in history:
        for role, kind, text in (("user", "input_text", question), ("assistant", "output_text", reply)):
            item = {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}
            await _send(cold, {"type": "conversation.item.create", "item": item})
    _, cold_ttft, cold_usage = await _turn(cold, LAST, 1)
    await cold.close()
    return warm_ttft, warm_usage, cold_ttft, cold_usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with bench_stack({"decode": 1}, decoder_threads="2") as stack:
        runs = [asyncio.run(_once(stack.ws, args.turns, args.max_tokens, n)) for n in range(args.repeats)]
    warm = statistics.median(r[0] for r in runs)
    cold = statistics.median(r[2] for r in runs)
    wu, cu = runs[-1][1], runs[-1][3]
    print(f"turns of history {args.turns}, replies up to {args.max_tokens} tokens, {args.repeats} repeats (median)")
    print(f"{'':22}{'TTFT (s)':>10}{'prompt tokens':>15}{'cached':>8}")
    for name, ttft, usage in (("warm (cache reused)", warm, wu), ("cold (no match)", cold, cu)):
        cached = usage["input_token_details"]["cached_tokens"]
        print(f"{name:22}{ttft:>10.3f}{usage['input_tokens']:>15}{cached:>8}")
    print(f"time to first token, warm / cold: {warm / cold:.2f}x")


if __name__ == "__main__":
    main()
