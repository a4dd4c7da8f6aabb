"""Interactive time to first token while a batch runs, against the same service idle, in one run.

One stack (decoder, audio and image workers, gateway; default settings). A person asks short
questions over the websocket, one at a time with a pause between them, and we time the first
token of each reply:
1. idle: nothing else runs;
2. batch: a 200-request batch (mostly text, some with a picture or speech) runs through
   /v1/batches at batch priority;
3. no priority (the baseline the batch machinery is for): the same kind of load sent as plain
   /v1/chat/completions by as many concurrent clients as the batch runs lines at once.
The goal is TTFT during a batch at most twice its idle value. The batch is cancelled at the end.

    python -m bench.batch [--probes 12] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import statistics
import time
from typing import Any

import httpx
import websockets

from bench.stack import bench_stack
from shared.config import Settings

MODEL = Settings().served_model_name  # the decoder model the stack runs
QUESTIONS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "What is 7 times 8?",
    "Which planet is called the red planet?",
]
BATCH_QUESTIONS = [
    "Explain what a hash map is in three sentences.",
    "Summarise the water cycle briefly.",
    "Give three tips for writing clear code.",
    "Describe a cat to someone who has never seen one.",
]


async def _probe(url: str, question: str) -> float:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()
        session = {"type": "realtime", "temperature": 0}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        start = time.perf_counter()
        await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": 16}}))
        first = float("nan")
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "response.output_text.delta" and first != first:
                first = time.perf_counter() - start
            elif event["type"] == "response.done":
                return first


async def _probes(url: str, n: int, pause_s: float) -> list[float]:
    out = []
    for i in range(n):
        out.append(await _probe(url, QUESTIONS[i % len(QUESTIONS)]))
        await asyncio.sleep(pause_s)
    return out


def _media() -> tuple[str, str]:
    from tests.pictures import data_url, picture
    from tests.speech import silence, speak, wav_bytes

    wav = base64.b64encode(wav_bytes(speak("What is the capital of Italy?") + silence(0.3))).decode()
    return data_url(picture("circle", "red")), wav


def _body(n: int, picture_url: str, wav: str) -> dict[str, Any]:
    content: Any = BATCH_QUESTIONS[n % len(BATCH_QUESTIONS)]
    if n % 10 == 3:
        content = [{"type": "image_url", "image_url": {"url": picture_url}}, {"type": "text", "text": "Describe it."}]
    elif n % 10 == 7:
        content = [{"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}]
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 48, "temperature": 0}


async def _with_batch(http: httpx.AsyncClient, ws: str, args: argparse.Namespace) -> tuple[list[float], int]:
    picture_url, wav = _media()
    lines = [
        json.dumps(
            {"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions", "body": _body(n, picture_url, wav)}
        )
        for n in range(args.requests)
    ]
    data = io.BytesIO(("\n".join(lines) + "\n").encode())
    upload = (await http.post("/files", files={"file": ("b.jsonl", data)}, data={"purpose": "batch"})).json()
    body = {"input_file_id": upload["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    batch = (await http.post("/batches", json=body)).json()
    # Wait until the batch is under way: its lines fill the decoder slots it may use.
    while (await http.get(f"/batches/{batch['id']}")).json()["request_counts"]["completed"] < 2:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    ttft = await _probes(ws, args.probes, args.pause)
    state = (await http.get(f"/batches/{batch['id']}")).json()
    if state["status"] != "in_progress":
        print(f"warning: the batch ended ({state['status']}) before the probes did; use more --requests")
    await http.post(f"/batches/{batch['id']}/cancel")
    return ttft, int(state["request_counts"]["completed"])


async def _with_plain_load(http: httpx.AsyncClient, ws: str, args: argparse.Namespace, clients: int) -> list[float]:
    picture_url, wav = _media()
    stop = asyncio.Event()

    async def client(k: int) -> None:
        n = k
        while not stop.is_set():
            await http.post("/chat/completions", json=_body(n, picture_url, wav))
            n += clients

    load = [asyncio.create_task(client(k)) for k in range(clients)]
    await asyncio.sleep(3.0)
    ttft = await _probes(ws, args.probes, args.pause)
    stop.set()
    for task in load:
        task.cancel()
    await asyncio.gather(*load, return_exceptions=True)
    return ttft


async def _run(port: int, ws: str, args: argparse.Namespace) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/v1", timeout=600) as http:
        await _probe(ws, "Hello!")  # warm-up
        idle = await _probes(ws, args.probes, args.pause)
        started = time.monotonic()
        during, completed = await _with_batch(http, ws, args)
        batch_rate = completed / (time.monotonic() - started)
        await asyncio.sleep(5.0)  # let the cancelled lines end
        plain = await _with_plain_load(http, ws, args, clients=2)

    def row(name: str, values: list[float]) -> str:
        p50, p95 = statistics.median(values), sorted(values)[int(0.95 * (len(values) - 1))]
        return f"{name:<34} {p50:>8.3f} {p95:>8.3f} {p50 / statistics.median(idle):>10.2f}x"

    print(f"{args.probes} probes each, {args.pause} s apart; batch of {args.requests} requests (48 tokens each)")
    print(f"{'interactive TTFT (s)':<34} {'p50':>8} {'p95':>8} {'p50 / idle':>11}")
    print(row("idle", idle))
    print(row("during the batch", during))
    print(row("same load as plain requests", plain))
    print(f"batch progress while probing: {completed} requests done ({batch_rate:.2f}/s)")
    verdict = "met" if statistics.median(during) <= 2 * statistics.median(idle) else "NOT met"
    print(f"goal (TTFT during a batch <= 2x idle): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=12)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between a person's questions")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with bench_stack({"decode": 1, "audio": 1, "image": 1}) as stack:
        asyncio.run(_run(stack.port, stack.ws, args))


if __name__ == "__main__":
    main()
