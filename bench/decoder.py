"""Time to first token and tokens/s: the whole path against llama-cpp-python in-process.

Whole path: websocket -> gateway -> Celery (Redis) -> decoder worker -> Redis Stream -> gateway
-> websocket. Baseline: `llama_cpp.Llama.create_chat_completion(stream=True)` in this process on
the same GGUF file with the same threads and context. Both use greedy decoding and the model's
chat template; each prompt is asked once per path after one warm-up.

    python -m bench.decoder [--max-tokens 96] [--threads 2] [--models SPEC ...]  (default: both bundled models)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time

import websockets

from bench.stack import bench_stack
from shared.config import DEFAULT_DECODER_MODEL, SMALL_DECODER_MODEL, Settings
from shared.models import resolve_model

SYSTEM = "You are a helpful, concise assistant."
PROMPTS = [
    "Explain what a hash map is.",
    "Write a Python function that reverses a string, and explain it.",
    "What are the differences between TCP and UDP?",
    "Describe how a binary search works.",
    "Give three tips for writing readable code.",
]


async def _via_gateway(url: str, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()
        await ws.send(
            json.dumps(
                {"type": "session.update", "session": {"type": "realtime", "temperature": 0, "instructions": SYSTEM}}
            )
        )
        await ws.send(
            json.dumps(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]},
                }
            )
        )
        start = time.perf_counter()
        await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": max_tokens}}))
        first = None
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "response.output_text.delta" and first is None:
                first = time.perf_counter()
            elif event["type"] == "response.done":
                end = time.perf_counter()
                tokens = event["response"]["usage"]["output_tokens"]
                assert first is not None
                return first - start, (tokens - 1) / max(end - first, 1e-9), tokens


def _in_process(llm: object, prompt: str, max_tokens: int) -> tuple[float, float, int]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    start = time.perf_counter()
    first = None
    tokens = 0
    for chunk in llm.create_chat_completion(
        messages=messages,
        max_tokens=max_tokens,  # type: ignore[attr-defined]
        temperature=0.0,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            tokens += 1
            first = first or time.perf_counter()
    end = time.perf_counter()
    assert first is not None
    return first - start, (tokens - 1) / max(end - first, 1e-9), tokens


def _summary(rows: list[tuple[float, float, int]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument(
        "--omp-wait-policy",
        choices=["passive", "active"],
        default="passive",
        help="the same OpenMP policy for both paths (the worker's default is passive)",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=[SMALL_DECODER_MODEL, DEFAULT_DECODER_MODEL],
        help="decoder models, one run each (default: both bundled ones)",
    )
    args = parser.parse_args()
    os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()  # before llama_cpp loads libgomp
    for spec in args.models:
        _run(spec, args)


def _run(spec: str, args: argparse.Namespace) -> None:
    settings = Settings()
    model = resolve_model(spec, settings.models_dir)

    worker = {
        "decoder_model": spec,
        "decoder_threads": str(args.threads),
        "decoder_n_ctx": str(args.n_ctx),
        "decoder_omp_wait_policy": args.omp_wait_policy,
    }
    with bench_stack({"decode": 1}, **worker) as stack:
        asyncio.run(_via_gateway(stack.ws, "Hello!", 8))  # warm-up
        path = [asyncio.run(_via_gateway(stack.ws, p, args.max_tokens)) for p in PROMPTS]

    from llama_cpp import Llama

    from workers.decoder.llama import init_backend

    init_backend()  # the best CPU variant, as the decoder loads it
    llm = Llama(
        model_path=str(model.path),
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=256,
        verbose=False,
    )
    _in_process(llm, "Hello!", 8)
    local = [_in_process(llm, p, args.max_tokens) for p in PROMPTS]
    llm.close()

    (p_ttft, p_tps), (l_ttft, l_tps) = _summary(path), _summary(local)
    print(
        f"model {model.path.name}  threads {args.threads}  OMP_WAIT_POLICY {args.omp_wait_policy}  "
        f"prompts {len(PROMPTS)}  max_tokens {args.max_tokens}"
    )
    print(f"{'':34}{'TTFT median (s)':>16}{'tokens/s median':>17}")
    print(f"{'whole path (ws+Celery+Redis)':34}{p_ttft:>16.3f}{p_tps:>17.1f}")
    print(f"{'llama-cpp-python in-process':34}{l_ttft:>16.3f}{l_tps:>17.1f}")
    print(f"ratio path/in-process: TTFT {p_ttft / l_ttft:.2f}x, tokens/s {p_tps / l_tps:.2f}x")


if __name__ == "__main__":
    main()
