"""Many conversations at once through mmstream's whole path, against llama.cpp's own llama-server.

Both run in this one invocation on the same GGUF with the same threads and the same context per
conversation; `OMP_WAIT_POLICY=passive` on both sides; each side on a server of its own, started
for it, sent the same prompts in the same order. Ours: a private Redis, one
gateway and one decoder worker serving `max(levels)` sequences (`bench/stack.py`). Theirs:
`llama-server -np max(levels)` built from the pinned llama.cpp with our CPU code (`bench/llama_server.py`),
with its defaults otherwise (2048/512 batches, an 8 GiB prompt cache).

For each level N, N streaming conversations start at once, each with a user prompt of its own
(only the system line repeats); greedy, `--max-tokens` each. The levels run `--rounds` times; each
round starts every side afresh, all up at once, and runs each level's sides back to back; the order
of both turns each round (the side started first ran slower), so that a host whose speed drifts
(these are shared machines) moves all sides alike; medians are
printed, and each round's tok/s ratio. Ours is measured over the websocket
(Realtime API) and over HTTP (`/v1/chat/completions`), theirs over HTTP. Printed per level: aggregate
generated tokens/s, TTFT p50/p95, the ratios, and CPU seconds per generated token in each process
(ours split into the gateway, Redis, the worker outside its engine thread, and the engine's work
outside `llama_decode`). Then, each side on a fresh server again, the persona load:
`--persona-sessions` conversations sharing a ~500-token system prompt arrive together, first with
a persona neither side has seen, then again with new questions; and returning conversations: twice
as many conversations as slots open, half at a time, then the first half each ask a second
question (their slots went to the second half: llama-server keeps such caches in host memory,
`--cache-ram`, and so do we). Last, `llama-batched-bench` on the same build: the engine's own ceiling.

    python -m bench.decoder_vs_llama_server [--models M ...] [--levels 1 4 8 16] [--max-tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
THEIRS = "llama-server"
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
    levels: dict[int, list[Run]] = field(default_factory=dict)  # N -> one run per round
    persona_cold: Run | None = None
    persona_warm: Run | None = None
    returning: Run | None = None


async def warm_up(ask: Ask) -> None:
    await ask(SYSTEM, "Hello!", 4, time.perf_counter())


async def measure_loads(
    ask: Ask, cpu: OursCpu | ServerCpu, args: argparse.Namespace, *, persona_too: bool, returning_too: bool
) -> Side:
    """The persona load (a persona neither side has seen, then again) and the returning one."""
    await warm_up(ask)
    side = Side()
    prompts = questions()
    system = persona("museum")
    for name in ("persona_cold", "persona_warm") if persona_too else ():
        requests: list[tuple[str, Prompt]] = [(system, next(prompts)) for _ in range(args.persona_sessions)]
        run = await at_once(ask, cpu, requests, args.persona_tokens)
        setattr(side, name, run)
        _progress(f"{name}: TTFT p50 {run.p50:.2f} s p95 {run.ttft_at(0.95):.2f} s, {run.tokens_per_s:.1f} tok/s")
    if returning_too:
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


def _worker_settings(spec: str, args: argparse.Namespace) -> dict[str, str]:
    return {
        "decoder_model": spec,
        "decoder_threads": str(args.threads),
        "decoder_n_ctx": str(args.n_ctx),
        "decoder_concurrency": str(max(*args.levels, args.persona_sessions)),
        "decoder_omp_wait_policy": "passive",
    }


@contextlib.contextmanager
def _ours(spec: str, args: argparse.Namespace, transport: str) -> Iterator[tuple[Ask, OursCpu]]:
    """A fresh stack of ours, and how to ask it over one transport."""
    metrics_port = free_port()
    with bench_stack({"decode": 1}, metrics_port=str(metrics_port), **_worker_settings(spec, args)) as stack:
        cpu = OursCpu(stack, metrics_port)
        if transport == "ws":

            async def ws(system: str, prompt: Prompt, max_tokens: int, start: float) -> tuple[float, int]:
                return await ask_ws(stack.ws, system, prompt, max_tokens, start)

            yield ws, cpu
            return
        client = _client(stack.http)

        async def http(system: str, prompt: Prompt, max_tokens: int, start: float) -> tuple[float, int]:
            return await ask_http(client, model_id(spec), system, prompt, max_tokens, start)

        yield http, cpu


@contextlib.contextmanager
def _theirs(model: Path, bin_dir: Path, args: argparse.Namespace) -> Iterator[tuple[Ask, ServerCpu]]:
    parallel = max(*args.levels, args.persona_sessions)
    with llama_server.llama_server(
        bin_dir,
        model,
        parallel=parallel,
        n_ctx_per_seq=args.n_ctx,
        threads=args.threads,
        port=free_port(),
        extra=args.server_args.split(),
    ) as server:
        client = _client(server.base)

        async def http(system: str, prompt: Prompt, max_tokens: int, start: float) -> tuple[float, int]:
            return await ask_http(client, model.stem, system, prompt, max_tokens, start)

        yield http, ServerCpu(server.proc.pid)


Maker = Callable[[], contextlib.AbstractContextManager[tuple[Ask, OursCpu | ServerCpu]]]


def _makers(spec: str, model: Path, bin_dir: Path, args: argparse.Namespace) -> dict[str, Maker]:
    """How to start each side on a fresh server of its own: ours over the websocket and over HTTP, then theirs."""
    makers: dict[str, Maker] = {"ours, websocket": lambda: _ours(spec, args, "ws")}
    if not args.skip_http:
        makers["ours, HTTP"] = lambda: _ours(spec, args, "http")
    makers[THEIRS] = lambda: _theirs(model, bin_dir, args)
    return makers


def _sides(
    makers: dict[str, Maker], stack: contextlib.ExitStack, turn: int
) -> dict[str, tuple[Ask, OursCpu | ServerCpu]]:
    """Every side started, in an order that turns with `turn`.

    The order matters: at N=1 with the 1.5B model, ours over the websocket ran 0.87-0.92x of
    llama-server when started first and 0.99x when started second, on a 2-core host."""
    names = list(makers)
    started = {name: stack.enter_context(makers[name]()) for name in _turned(names, turn)}
    return {name: started[name] for name in names}


def _turned(names: list[str], turn: int) -> list[str]:
    return names[turn % len(names) :] + names[: turn % len(names)]


async def _one_round(
    sides: dict[str, tuple[Ask, OursCpu | ServerCpu]],
    r: int,
    prompts: Iterator[str],
    args: argparse.Namespace,
    result: dict[str, Side],
) -> None:
    for ask, _ in sides.values():
        await warm_up(ask)
    for n in args.levels:
        requests: list[tuple[str, Prompt]] = [(SYSTEM, next(prompts)) for _ in range(n)]
        for name in _turned(list(sides), r):
            ask, cpu = sides[name]
            run = await at_once(ask, cpu, requests, args.max_tokens)
            result.setdefault(name, Side()).levels.setdefault(n, []).append(run)
            _progress(f"round {r + 1} N={n} {name}: {run.tokens_per_s:.1f} tok/s, TTFT p50 {run.p50:.2f} s")


def run_levels(spec: str, model: Path, bin_dir: Path, args: argparse.Namespace) -> dict[str, Side]:
    """N conversations at once for each level, `--rounds` times. Each round starts every side afresh,
    all up at once, and runs each level's sides back to back; both orders turn each round: a machine
    whose speed drifts (a shared host) moves every side alike, and the medians over rounds say the rest."""
    result: dict[str, Side] = {}
    prompts, makers = questions(), _makers(spec, model, bin_dir, args)
    for r in range(args.rounds):
        with contextlib.ExitStack() as stack:
            sides = _sides(makers, stack, turn=r)
            asyncio.run(_one_round(sides, r, prompts, args, result))
    return result


def run_loads(spec: str, model: Path, bin_dir: Path, args: argparse.Namespace) -> dict[str, Side]:
    """The persona and returning loads, each side on a fresh server (nothing cached from the levels)."""
    result: dict[str, Side] = {}
    for name, make in _makers(spec, model, bin_dir, args).items():
        with make() as (ask, cpu):
            # Ours: the persona load over the websocket, returning conversations over HTTP.
            persona_too = name != "ours, HTTP"
            returning_too = name == "ours, HTTP" or (name == THEIRS and not args.skip_http)
            side = asyncio.run(measure_loads(ask, cpu, args, persona_too=persona_too, returning_too=returning_too))
            result[name] = side
    return result


def _client(base: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base, timeout=900, limits=httpx.Limits(max_connections=128))


# --- report ----------------------------------------------------------------------------------------


def _per_token(run: Run, key: str) -> float:
    return 1000 * run.cpu.get(key, float("nan")) / max(run.tokens, 1)


def _median(runs: list[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(r) for r in runs)


def report(name: str, sides: dict[str, Side], variant: str, args: argparse.Namespace) -> None:
    theirs = sides[THEIRS]
    ours = {k: v for k, v in sides.items() if k != THEIRS}
    print(f"\n## {name}: threads {args.threads}, {args.n_ctx} tokens of context per conversation, CPU {variant}")
    print(
        f"max_tokens {args.max_tokens}, greedy; medians of {args.rounds} rounds, every side started afresh and up at "
        "once each round, each level's runs back to back; ratios are ours / llama-server of those medians\n"
    )
    print(
        "| transport | N | ours tok/s | TTFT p50 / p95 | llama-server tok/s | TTFT p50 / p95 "
        "| tok/s ratio | TTFT p50 ratio | tok/s ratio per round |"
    )
    print("|---|---|---|---|---|---|---|---|---|")

    def tps(r: Run) -> float:
        return r.tokens_per_s

    def p50(r: Run) -> float:
        return r.p50

    def p95(r: Run) -> float:
        return r.ttft_at(0.95)

    for transport, side in ours.items():
        for n, a in side.levels.items():
            b = theirs.levels[n]
            rounds = " ".join(f"{x.tokens_per_s / y.tokens_per_s:.2f}" for x, y in zip(a, b, strict=True))
            print(
                f"| {transport} | {n} | {_median(a, tps):.1f} | {_median(a, p50):.2f} / {_median(a, p95):.2f} s | "
                f"{_median(b, tps):.1f} | {_median(b, p50):.2f} / {_median(b, p95):.2f} s | "
                f"{_median(a, tps) / _median(b, tps):.2f}x | {_median(a, p50) / _median(b, p50):.2f}x | {rounds} |"
            )
    print("\nCPU milliseconds per generated token (all levels and rounds of a transport together)\n")
    keys = ["gateway", "redis", "worker (not engine)", "engine, not decode", "total"]
    print("| side | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for transport, side in sides.items():
        runs = [r for level in side.levels.values() for r in level]
        merged = Run(
            sum(r.seconds for r in runs),
            sum(r.tokens for r in runs),
            [],
            {k: sum(r.cpu.get(k, 0.0) for r in runs) for k in keys},
        )
        ours_side = transport != THEIRS
        cells = [f"{_per_token(merged, k):.1f}" if (k == "total" or ours_side) else "-" for k in keys]
        print(f"| {transport} | " + " | ".join(cells) + " |")
    if args.levels_only:
        return
    print(f"\nPersona load: {args.persona_sessions} conversations at once sharing a ~500-token system prompt\n")
    print("| round | ours TTFT p50 / p95 | tok/s | llama-server TTFT p50 / p95 | tok/s | TTFT p50 ratio |")
    print("|---|---|---|---|---|---|")
    mine = sides["ours, websocket"]
    for label, x, y in [
        ("unseen persona", mine.persona_cold, theirs.persona_cold),
        ("again, new questions", mine.persona_warm, theirs.persona_warm),
    ]:
        assert x is not None and y is not None
        print(
            f"| {label} | {x.p50:.2f} / {x.ttft_at(0.95):.2f} s | {x.tokens_per_s:.1f} | "
            f"{y.p50:.2f} / {y.ttft_at(0.95):.2f} s | {y.tokens_per_s:.1f} | {x.p50 / y.p50:.2f}x |"
        )
    back, theirs_back = sides.get("ours, HTTP", Side()).returning, theirs.returning
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
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the levels load; medians are printed")
    parser.add_argument("--server-args", default="", help="more llama-server options, e.g. '--no-cache-idle-slots'")
    args = parser.parse_args()
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

    bin_dir = llama_server.ensure_built()
    for spec in args.models:
        model = resolve_model(spec, Settings().models_dir).path
        variant = llama_server.decoder_cpu_variant(model)
        llama_server.link_cpu_backend(bin_dir, variant)
        sides = run_levels(spec, model, bin_dir, args)
        if not args.levels_only:
            for name, side in run_loads(spec, model, bin_dir, args).items():
                side.levels = sides[name].levels
                sides[name] = side
        report(model.name, sides, f"{variant} on both sides (the only libggml-cpu beside llama-server)", args)
        if not args.no_ceiling:
            print("\nllama-batched-bench on the same build (the engine alone, no server):\n")
            print(
                llama_server.batched_bench(
                    bin_dir, model, threads=args.threads, parallel=args.levels, prompt=48, gen=args.max_tokens
                )
            )


if __name__ == "__main__":
    main()
