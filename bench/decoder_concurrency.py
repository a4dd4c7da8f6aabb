"""Many conversations at once: aggregate tokens/s and time to first token, ours against llama_cpp.server.

Ours: C websocket sessions at once through the whole path (gateway, Celery on Redis, one decoder
worker that batches up to C sequences in each llama_decode call). Baseline, started and measured in
the same run: llama-cpp-python's own OpenAI server (`python -m llama_cpp.server`) on the same GGUF
file with the same threads, C streaming /v1/chat/completions requests at once. Both greedy, the same
prompts and the same number of tokens to generate; every reply is made to run to `--max-tokens`
(`ignore_eos` is not available on both sides, so prompts ask for long answers and the few that end
early are counted as they are).

    python -m bench.decoder_concurrency [--levels 1 4 8 16] [--max-tokens 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx
import websockets

from bench.stack import bench_stack, free_port
from shared.config import DEFAULT_DECODER_MODEL, SMALL_DECODER_MODEL, Settings
from shared.models import resolve_model

SYSTEM = "You are a helpful assistant. Answer in detail."
PROMPTS = [
    "Explain how a hash map works, in detail.",
    "Describe the TCP handshake step by step.",
    "Write a long story about a robot learning to paint.",
    "Explain the difference between processes and threads, with examples.",
    "Describe how a compiler turns source code into machine code.",
    "List the planets of the solar system and describe each one.",
    "Explain how public-key cryptography works.",
    "Describe the water cycle in detail.",
]


@dataclass(frozen=True)
class Run:
    seconds: float
    tokens: int
    ttft: list[float]

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def ttft_at(self, q: float) -> float:
        values = sorted(self.ttft)
        return values[min(len(values) - 1, int(q * len(values)))]


async def _ours_one(url: str, prompt: str, max_tokens: int, start: float) -> tuple[float, int]:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()
        session = {"type": "realtime", "temperature": 0, "instructions": SYSTEM}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": max_tokens}}))
        first = None
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "response.output_text.delta" and first is None:
                first = time.perf_counter() - start
            elif event["type"] == "response.done":
                return first or float("nan"), int(event["response"]["usage"]["output_tokens"])


async def _server_one(client: httpx.AsyncClient, prompt: str, max_tokens: int, start: float) -> tuple[float, int]:
    body = {
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    first, tokens = None, 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter() - start
                tokens += 1  # llama_cpp.server streams one token per chunk
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    return first or float("nan"), tokens


async def _level(one, n: int, max_tokens: int) -> Run:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    results = await asyncio.gather(*(one(PROMPTS[i % len(PROMPTS)], max_tokens, start) for i in range(n)))
    return Run(time.perf_counter() - start, sum(t for _, t in results), [f for f, _ in results])


async def _ours(url: str, levels: list[int], max_tokens: int) -> dict[int, Run]:
    await _ours_one(url, "Hello!", 4, time.perf_counter())  # warm-up

    async def one(prompt: str, tokens: int, start: float) -> tuple[float, int]:
        return await _ours_one(url, prompt, tokens, start)

    return {n: await _level(one, n, max_tokens) for n in levels}


async def _server(base: str, levels: list[int], max_tokens: int) -> dict[int, Run]:
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=httpx.Limits(max_connections=64)) as client:
        await _server_one(client, "Hello!", 4, time.perf_counter())  # warm-up

        async def one(prompt: str, tokens: int, start: float) -> tuple[float, int]:
            return await _server_one(client, prompt, tokens, start)

        return {n: await _level(one, n, max_tokens) for n in levels}


def _start_server(model: Path, threads: int, n_ctx: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="mmstream-bench-")) / "llama-server.log"
    # llama_cpp.server itself loads no CPU backend: load the one the decoder would, then run it.
    launch = (
        "import runpy; from workers.decoder.llama import init_backend; init_backend(); "
        "runpy.run_module('llama_cpp.server', run_name='__main__')"
    )
    cmd = [sys.executable, "-c", launch, "--model", str(model), "--n_threads", str(threads)]
    cmd += ["--n_threads_batch", str(threads), "--n_ctx", str(n_ctx), "--n_batch", "256", "--port", str(port)]
    cmd += ["--interrupt_requests", "False"]  # by default a new request cuts off the one streaming
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, env=os.environ.copy())
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/v1/models", timeout=2):  # noqa: S310
                return proc, base
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise TimeoutError(f"llama_cpp.server did not start; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=1024, help="context per conversation")
    parser.add_argument(
        "--models",
        nargs="+",
        default=[SMALL_DECODER_MODEL, DEFAULT_DECODER_MODEL],
        help="decoder models, one run each (default: both bundled ones)",
    )
    args = parser.parse_args()
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # the decoder worker's default, for both sides
    for spec in args.models:
        _run(spec, args)


def _run(spec: str, args: argparse.Namespace) -> None:
    model = resolve_model(spec, Settings().models_dir)
    top = max(args.levels)
    worker = {
        "decoder_model": spec,
        "decoder_threads": str(args.threads),
        "decoder_n_ctx": str(args.n_ctx),
        "decoder_concurrency": str(top),
        "decoder_omp_wait_policy": "passive",
    }
    with bench_stack({"decode": 1}, **worker) as stack:
        ours = asyncio.run(_ours(stack.ws, args.levels, args.max_tokens))
    proc, base = _start_server(model.path, args.threads, args.n_ctx * top)
    try:
        theirs = asyncio.run(_server(base, args.levels, args.max_tokens))
    finally:
        proc.terminate()
        proc.wait(30)

    print(f"model {model.path.name}  threads {args.threads}  max_tokens {args.max_tokens}  one decoder process")
    head = f"{'conversations':>13} | {'ours tok/s':>10} {'TTFT p50':>8} {'p95':>6} | "
    head += f"{'server tok/s':>12} {'TTFT p50':>8} {'p95':>6} | {'tok/s ratio':>11} {'TTFT p50 ratio':>14}"
    print(head)
    for n in args.levels:
        a, b = ours[n], theirs[n]
        print(
            f"{n:>13} | {a.tokens_per_s:>10.1f} {statistics.median(a.ttft):>8.2f} {a.ttft_at(0.95):>6.2f} | "
            f"{b.tokens_per_s:>12.1f} {statistics.median(b.ttft):>8.2f} {b.ttft_at(0.95):>6.2f} | "
            f"{a.tokens_per_s / b.tokens_per_s:>10.2f}x {statistics.median(a.ttft) / statistics.median(b.ttft):>13.2f}x"
        )


if __name__ == "__main__":
    main()
