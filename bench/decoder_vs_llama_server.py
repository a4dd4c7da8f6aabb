"""Many conversations at once through mmstream's whole path, against llama.cpp's own llama-server.

Both run in this one invocation, one after the other, on the same GGUF with the same threads and the
same context per conversation; `OMP_WAIT_POLICY=passive` on both sides; each side on a server of its
own, started for it, sent the same prompts in the same order. Ours: a private Redis, one
gateway and one decoder worker serving `max(levels)` sequences (`bench/stack.py`). Theirs:
`llama-server -np max(levels)` built from the pinned llama.cpp with our CPU code (`bench/llama_server.py`),
with its defaults otherwise (2048/512 batches, an 8 GiB prompt cache).

For each level N, N streaming conversations start at once, each with a user prompt of its own
(only the system line repeats); greedy, `--max-tokens` each. Ours is measured over the websocket
(Realtime API) and over HTTP (`/v1/chat/completions`), theirs over HTTP. Printed per level: aggregate
generated tokens/s, TTFT p50/p95, the ratios, and CPU seconds per generated token in each process
(ours split into the gateway, Redis, the worker outside its engine thread, and the engine's work
outside `llama_decode`). Then the persona load: `--persona-sessions` conversations sharing a
~500-token system prompt arrive together, first with a persona neither side has seen, then again
with new questions; and returning conversations: twice as many conversations as slots open, half
at a time, then the first half each ask a second question (their slots went to the second half:
llama-server keeps such caches in host memory, `--cache-ram`, and so do we). Last,
`llama-batched-bench` on the same build: the engine's own ceiling.

    python -m bench.decoder_vs_llama_server [--models M ...] [--levels 1 4 8 16] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import statistics
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import websockets

from bench import llama_server
from bench.stack import BenchStack, bench_stack, free_port
from shared.config import DEFAULT_DECODER_MODEL, SMALL_DECODER_MODEL, Settings, model_id
from shared.models import resolve_model

SYSTEM = "You are a helpful assistant. Answer in detail."
TOPICS = [
    "how a hash map works",
    "the TCP handshake, step by step",
    "how a robot might learn to paint, as a long story",
    "the difference between processes and threads, with examples",
    "how a compiler turns source code into machine code",
    "the planets of the solar system, one by one",
    "how public-key cryptography works",
    "the water cycle",
    "how a bicycle stays upright",
    "how vaccines train the immune system",
    "the history of the printing press",
    "how a refrigerator moves heat",
]
ASPECTS = ["for a beginner", "for an engineer", "with an analogy", "with a worked example", "in plain words"]
_PERSONA_RULES = [
    "Greet nobody; answer at once.",
    "Use short sentences and plain words.",
    "Give numbers with their units.",
    "Say so when you are not sure.",
    "Never invent a source or a quotation.",
    "Prefer examples from everyday life.",
    "Explain each technical term the first time it appears.",
    "Keep lists to at most five points.",
]

# A user prompt, or the turns after the system line: [user, assistant, user, ...].
Prompt = str | list[str]
Ask = Callable[[str, Prompt, int, float], Awaitable[tuple[float, int]]]


def persona(tag: str) -> str:
    """A ~500-token system prompt; `tag` makes one neither side has seen before."""
    lines = [f"You are Aster ({tag}), the assistant of a science museum. Your house rules follow."]
    lines += [f"Rule {i + 1}.{j + 1}: {rule}" for i in range(6) for j, rule in enumerate(_PERSONA_RULES)]
    return " ".join(lines)


def history(n: int) -> str:
    """A ~170-token user message unique to conversation `n` (its first words differ)."""
    towns = " ".join(f"Town {n}-{i} lies on the river and holds a market on day {i}." for i in range(12))
    return f"Conversation {n}. Read this list. {towns} Which town holds a market on day 3?"


def questions() -> Iterator[str]:
    """The user prompts, all different, in the same order for every side (each starts afresh)."""
    for n in itertools.count():
        yield f"Explain {TOPICS[n % len(TOPICS)]}, {ASPECTS[(n // len(TOPICS)) % len(ASPECTS)]} (question {n})."


@dataclass(frozen=True)
class Run:
    seconds: float
    tokens: int
    ttft: list[float]
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds during the run

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def ttft_at(self, q: float) -> float:
        values = sorted(self.ttft)
        return values[min(len(values) - 1, int(q * len(values)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.ttft)


# --- CPU accounting --------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(path: Path) -> tuple[str, float]:
    text = path.read_text()
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return name, (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def process_cpu(pid: int) -> float:
    return _stat_cpu(Path(f"/proc/{pid}/stat"))[1]


def threads_cpu(pid: int, name: str) -> float:
    """CPU of the threads of `pid` called `name` (the engine thread and the llama.cpp threads it made)."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm, cpu = _stat_cpu(task / "stat")
        except OSError:
            continue
        if comm == name:
            total += cpu
    return total


def _engine_other_cpu(metrics_port: int) -> float:
    """The engine thread's CPU outside llama_decode (batches, sampling, text), from its metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:  # noqa: S310
        body = r.read().decode()
    found = re.search(r'^mmstream_decoder_engine_cpu_seconds_total\{part="other"\} ([0-9.e+-]+)$', body, re.M)
    return float(found.group(1)) if found else 0.0


class OursCpu:
    def __init__(self, stack: BenchStack, metrics_port: int) -> None:
        self._stack, self._port = stack, metrics_port

    def sample(self) -> dict[str, float]:
        gateway, worker = self._stack.pid("gateway"), self._stack.pid("decode-0")
        engine = threads_cpu(worker, "mm-engine")
        return {
            "gateway": process_cpu(gateway),
            "redis": process_cpu(self._stack.redis_pid),
            "worker (not engine)": process_cpu(worker) - engine,
            "engine, not decode": _engine_other_cpu(self._port),
            "total": process_cpu(gateway) + process_cpu(self._stack.redis_pid) + process_cpu(worker),
        }


class ServerCpu:
    def __init__(self, pid: int) -> None:
        self._pid = pid

    def sample(self) -> dict[str, float]:
        return {"total": process_cpu(self._pid)}


# --- clients ---------------------------------------------------------------------------------------


async def ask_ws(url: str, system: str, prompt: Prompt, max_tokens: int, start: float) -> tuple[float, int]:
    assert isinstance(prompt, str), "one user prompt per session over the websocket"
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()
        session = {"type": "realtime", "temperature": 0, "instructions": system}
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


async def ask_http(
    client: httpx.AsyncClient, model: str, system: str, prompt: Prompt, max_tokens: int, start: float
) -> tuple[float, int]:
    turns = [prompt] if isinstance(prompt, str) else prompt
    messages = [{"role": "system", "content": system}]
    messages += [{"role": ("user", "assistant")[i % 2], "content": text} for i, text in enumerate(turns)]
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    first, tokens = None, 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter() - start
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    return first or float("nan"), tokens


async def at_once(ask: Ask, cpu: OursCpu | ServerCpu, requests: list[tuple[str, Prompt]], max_tokens: int) -> Run:
    before = cpu.sample()
    start = time.perf_counter()
    results = await asyncio.gather(*(ask(system, prompt, max_tokens, start) for system, prompt in requests))
    seconds = time.perf_counter() - start
    after = cpu.sample()
    spent = {k: after[k] - before[k] for k in after}
    return Run(seconds, sum(t for _, t in results), [f for f, _ in results], spent)


@dataclass
class Side:
    levels: dict[int, Run] = field(default_factory=dict)
    persona_cold: Run | None = None
    persona_warm: Run | None = None
    returning: Run | None = None


async def measure(
    ask: Ask, cpu: OursCpu | ServerCpu, args: argparse.Namespace, *, with_persona: bool, with_returning: bool
) -> Side:
    await ask(SYSTEM, "Hello!", 4, time.perf_counter())  # warm-up
    side = Side()
    prompts = questions()
    for n in args.levels:
        requests: list[tuple[str, Prompt]] = [(SYSTEM, next(prompts)) for _ in range(n)]
        run = side.levels[n] = await at_once(ask, cpu, requests, args.max_tokens)
        _progress(f"N={n}: {run.tokens_per_s:.1f} tok/s, TTFT p50 {run.p50:.2f} s, CPU {run.cpu}")
    if with_persona:
        # A persona neither side has seen (each side runs on a server of its own).
        system = persona("museum")
        sessions = args.persona_sessions
        for name in ("persona_cold", "persona_warm"):
            requests = [(system, next(prompts)) for _ in range(sessions)]
            run = await at_once(ask, cpu, requests, args.persona_tokens)
            setattr(side, name, run)
            _progress(f"{name}: TTFT p50 {run.p50:.2f} s p95 {run.ttft_at(0.95):.2f} s, {run.tokens_per_s:.1f} tok/s")
    if with_returning:
        side.returning = await returning(ask, cpu, args)
        _progress(f"returning: TTFT p50 {side.returning.p50:.2f} s p95 {side.returning.ttft_at(0.95):.2f} s")
    return side


async def returning(ask: Ask, cpu: OursCpu | ServerCpu, args: argparse.Namespace) -> Run:
    """Conversations come back after their slots went to others: 2N conversations open, N at a
    time (N = the slots), then the first N each ask a second question. Measured: the second turns."""
    n = max(args.levels)
    for wave in range(2):
        opening: list[tuple[str, Prompt]] = [(SYSTEM, history(wave * n + i)) for i in range(n)]
        await at_once(ask, cpu, opening, args.persona_tokens)
    follow: list[tuple[str, Prompt]] = [(SYSTEM, [history(i), "Town 3.", "And on day 4?"]) for i in range(n)]
    return await at_once(ask, cpu, follow, args.persona_tokens)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- the two sides ---------------------------------------------------------------------------------


def run_ours(spec: str, args: argparse.Namespace) -> dict[str, Side]:
    """Ours over the websocket, then over HTTP, each on a stack of its own (no cache carried over)."""
    sides = {"ours, websocket": _ours_on_fresh_stack(spec, args, "ws")}
    if not args.skip_http:
        sides["ours, HTTP"] = _ours_on_fresh_stack(spec, args, "http")
    return sides


def _ours_on_fresh_stack(spec: str, args: argparse.Namespace, transport: str) -> Side:
    metrics_port = free_port()
    worker = {
        "decoder_model": spec,
        "decoder_threads": str(args.threads),
        "decoder_n_ctx": str(args.n_ctx),
        "decoder_concurrency": str(max(*args.levels, args.persona_sessions)),
        "decoder_omp_wait_policy": "passive",
    }
    with bench_stack({"decode": 1}, metrics_port=str(metrics_port), **worker) as stack:
        cpu = OursCpu(stack, metrics_port)
        if transport == "ws":

            async def ws(system: str, prompt: Prompt, max_tokens: int, start: float) -> tuple[float, int]:
                return await ask_ws(stack.ws, system, prompt, max_tokens, start)

            return asyncio.run(measure(ws, cpu, args, with_persona=not args.levels_only, with_returning=False))

        async def over_http() -> Side:
            async with _client(stack.http) as client:

                async def http(system: str, prompt: Prompt, max_tokens: int, start: float) -> tuple[float, int]:
                    return await ask_http(client, model_id(spec), system, prompt, max_tokens, start)

                return await measure(http, cpu, args, with_persona=False, with_returning=not args.levels_only)

        return asyncio.run(over_http())


def run_theirs(model: Path, bin_dir: Path, args: argparse.Namespace) -> Side:
    parallel = max(*args.levels, args.persona_sessions)
    with llama_server.llama_server(
        bin_dir, model, parallel=parallel, n_ctx_per_seq=args.n_ctx, threads=args.threads, port=free_port(), extra=[]
    ) as server:
        cpu = ServerCpu(server.proc.pid)

        async def over_http() -> Side:
            async with _client(server.base) as client:

                async def http(system: str, prompt: Prompt, max_tokens: int, start: float) -> tuple[float, int]:
                    return await ask_http(client, model.stem, system, prompt, max_tokens, start)

                loads = not args.levels_only
                return await measure(http, cpu, args, with_persona=loads, with_returning=loads and not args.skip_http)

        return asyncio.run(over_http())


def _client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, timeout=900, limits=httpx.Limits(max_connections=128))


# --- report ----------------------------------------------------------------------------------------


def _per_token(run: Run, key: str) -> float:
    return 1000 * run.cpu.get(key, float("nan")) / max(run.tokens, 1)


def report(name: str, ours: dict[str, Side], theirs: Side, variant: str, args: argparse.Namespace) -> None:
    print(f"\n## {name}: threads {args.threads}, {args.n_ctx} tokens of context per conversation, CPU {variant}")
    print(f"max_tokens {args.max_tokens}, greedy; ratios are ours / llama-server\n")
    print(
        "| transport | N | ours tok/s | TTFT p50 / p95 | llama-server tok/s | TTFT p50 / p95 "
        "| tok/s ratio | TTFT p50 ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for transport, side in ours.items():
        for n, a in side.levels.items():
            b = theirs.levels[n]
            print(
                f"| {transport} | {n} | {a.tokens_per_s:.1f} | {a.p50:.2f} / {a.ttft_at(0.95):.2f} s | "
                f"{b.tokens_per_s:.1f} | {b.p50:.2f} / {b.ttft_at(0.95):.2f} s | "
                f"{a.tokens_per_s / b.tokens_per_s:.2f}x | {a.p50 / b.p50:.2f}x |"
            )
    print("\nCPU milliseconds per generated token (all levels of a transport together)\n")
    keys = ["gateway", "redis", "worker (not engine)", "engine, not decode", "total"]
    print("| side | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for transport, side in [*ours.items(), ("llama-server", theirs)]:
        merged = Run(
            sum(r.seconds for r in side.levels.values()),
            sum(r.tokens for r in side.levels.values()),
            [],
            {k: sum(r.cpu.get(k, 0.0) for r in side.levels.values()) for k in keys},
        )
        ours_side = transport != "llama-server"
        cells = [f"{_per_token(merged, k):.1f}" if (k == "total" or ours_side) else "-" for k in keys]
        print(f"| {transport} | " + " | ".join(cells) + " |")
    if args.levels_only:
        return
    print(f"\nPersona load: {args.persona_sessions} conversations at once sharing a ~500-token system prompt\n")
    print("| round | ours TTFT p50 / p95 | tok/s | llama-server TTFT p50 / p95 | tok/s | TTFT p50 ratio |")
    print("|---|---|---|---|---|---|")
    mine = ours["ours, websocket"]
    for label, a, b in [
        ("unseen persona", mine.persona_cold, theirs.persona_cold),
        ("again, new questions", mine.persona_warm, theirs.persona_warm),
    ]:
        assert a is not None and b is not None
        print(
            f"| {label} | {a.p50:.2f} / {a.ttft_at(0.95):.2f} s | {a.tokens_per_s:.1f} | "
            f"{b.p50:.2f} / {b.ttft_at(0.95):.2f} s | {b.tokens_per_s:.1f} | {a.p50 / b.p50:.2f}x |"
        )
    back, theirs_back = ours.get("ours, HTTP", Side()).returning, theirs.returning
    if back is not None and theirs_back is not None:
        n = max(args.levels)
        print(f"\nReturning conversations: {2 * n} open on {n} slots, then the first {n} ask again (over HTTP)\n")
        print("| ours TTFT p50 / p95 | llama-server TTFT p50 / p95 | TTFT p50 ratio |")
        print("|---|---|---|")
        print(
            f"| {back.p50:.2f} / {back.ttft_at(0.95):.2f} s "
            f"| {theirs_back.p50:.2f} / {theirs_back.ttft_at(0.95):.2f} s | {back.p50 / theirs_back.p50:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[SMALL_DECODER_MODEL, DEFAULT_DECODER_MODEL])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096, help="context per conversation, both sides")
    parser.add_argument("--persona-sessions", type=int, default=16)
    parser.add_argument("--persona-tokens", type=int, default=16, help="tokens to generate in the persona load")
    parser.add_argument("--skip-http", action="store_true", help="ours over the websocket only")
    parser.add_argument("--levels-only", action="store_true", help="skip the persona and returning loads")
    parser.add_argument("--no-ceiling", action="store_true", help="skip llama-batched-bench")
    args = parser.parse_args()
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

    bin_dir = llama_server.ensure_built()
    for spec in args.models:
        model = resolve_model(spec, Settings().models_dir).path
        variant = llama_server.decoder_cpu_variant(model)
        llama_server.link_cpu_backend(bin_dir, variant)
        ours = run_ours(spec, args)
        theirs = run_theirs(model, bin_dir, args)
        report(model.name, ours, theirs, f"{variant} on both sides (the only libggml-cpu beside llama-server)", args)
        if not args.no_ceiling:
            print("\nllama-batched-bench on the same build (the engine alone, no server):\n")
            print(
                llama_server.batched_bench(
                    bin_dir, model, threads=args.threads, parallel=args.levels, prompt=48, gen=args.max_tokens
                )
            )


if __name__ == "__main__":
    main()
