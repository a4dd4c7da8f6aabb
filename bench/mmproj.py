"""Pictures through a VLM's mmproj: our image workers' encoder against llama-server's in-process one.

    python -m bench.mmproj [--pictures 8] [--at-once 4]

The pair is LLaVA-style (`training/tiny_vlm.py`): a vision tower the shape of CLIP ViT-B/16 at 224 px (12 layers,
width 768, 196 picture tokens) with seeded random weights (an encoder's cost does not depend on its weights; no real
VLM is reachable offline), projected onto the tiny text model, so the encoder is nearly all the cost. Written once
into ~/.cache/mmstream/bench.

Each side gets the same requests over `/v1/chat/completions`, `--at-once` at a time, one token each:
1. first turns: each a new conversation with a picture never sent before and a question. Pictures per second
   (pictures over the wall time) and the reply time, p50 and p95, which is TTFT (one token);
2. second turns: each conversation again, its picture in the history, and a new question. Ours finds the picture's
   embeddings in the image workers' cache and its tokens in the decoder's prefix cache; llama-server keeps prompts
   per slot (and `--cache-ram`).

Ours: a gateway, a decoder and one image worker of 2 threads, then two of 1 thread each (the decoder on 2 threads);
llama-server: `--mmproj`, `-t 2`, `-np --at-once`; `OMP_WAIT_POLICY=passive` on both.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from bench import llama_server
from bench.stack import bench_stack, free_port
from shared.config import model_id
from training.tiny_vlm import Shape, TinyVlm, build

# CLIP ViT-B/16 at 224 px; LLaVA takes the features of the last layer but one.
TOWER = Shape(v_embd=768, v_ff=3072, v_layer=12, v_head=12, image_size=224, patch_size=16)
SYSTEM = "Describe."


def _picture(seed: int) -> str:
    rgb = np.random.default_rng(seed).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def _messages(picture: str, turn: int) -> list[dict[str, object]]:
    first = {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": picture}}, {"type": "text", "text": "What is this?"}],
    }
    messages: list[dict[str, object]] = [{"role": "system", "content": SYSTEM}, first]
    if turn == 2:
        messages += [{"role": "assistant", "content": "A picture."}, {"role": "user", "content": "And its colour?"}]
    return messages


@dataclass(frozen=True)
class Wave:
    seconds: float
    times: list[float]

    def at(self, q: float) -> float:
        values = sorted(self.times)
        return values[min(len(values) - 1, int(q * len(values)))]


async def _wave(client: httpx.AsyncClient, model: str, pictures: list[str], turn: int, at_once: int) -> Wave:
    limit = asyncio.Semaphore(at_once)

    async def one(picture: str) -> float:
        async with limit:
            started = time.perf_counter()
            body = {"model": model, "messages": _messages(picture, turn), "max_tokens": 1, "temperature": 0}
            reply = await client.post("/v1/chat/completions", json=body)
            reply.raise_for_status()
            return time.perf_counter() - started

    started = time.perf_counter()
    times = await asyncio.gather(*(one(p) for p in pictures))
    return Wave(time.perf_counter() - started, list(times))


async def _both_turns(base: str, model: str, pictures: list[str], at_once: int) -> tuple[Wave, Wave]:
    async with httpx.AsyncClient(base_url=base, timeout=900) as client:
        await _wave(client, model, [_picture(10**6)], 1, 1)  # warm-up: every model loaded
        first = await _wave(client, model, pictures, 1, at_once)
        second = await _wave(client, model, pictures, 2, at_once)
    return first, second


@contextlib.contextmanager
def _ours(vlm: TinyVlm, image_workers: int, at_once: int) -> Iterator[str]:
    settings = {
        "decoder_model": str(vlm.text),
        "decoder_mmproj": str(vlm.mmproj),
        "fusion_mode": "embed",
        "decoder_threads": "2",
        "decoder_concurrency": str(at_once),
        "decoder_omp_wait_policy": "passive",
        "image_threads": str(2 // image_workers),
    }
    with bench_stack({"decode": 1, "image": image_workers}, **settings) as stack:
        yield stack.http


def _report(name: str, n: int, first: Wave, second: Wave) -> str:
    return (
        f"| {name} | {n / first.seconds:.2f} | {first.at(0.5):.2f} / {first.at(0.95):.2f} s | "
        f"{second.at(0.5):.2f} / {second.at(0.95):.2f} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=8)
    parser.add_argument("--at-once", type=int, default=4)
    args = parser.parse_args()
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    vlm = build(Path.home() / ".cache" / "mmstream" / "bench", shape=TOWER)
    pictures = [_picture(i) for i in range(args.pictures)]
    model = model_id(str(vlm.text))
    rows = []
    for workers in (1, 2):
        with _ours(vlm, workers, args.at_once) as base:
            first, second = asyncio.run(_both_turns(base, model, pictures, args.at_once))
        label = f"ours, {workers} image worker(s) of {2 // workers} thread(s)"
        rows.append(_report(label, args.pictures, first, second))
        print(rows[-1], flush=True)
    bin_dir = llama_server.ensure_built()
    port = free_port()
    extra = ["--mmproj", str(vlm.mmproj)]
    with llama_server.llama_server(
        bin_dir, vlm.text, parallel=args.at_once, n_ctx_per_seq=512, threads=2, port=port, extra=extra
    ) as server:
        first, second = asyncio.run(_both_turns(server.base, model, pictures, args.at_once))
    rows.append(_report("llama-server --mmproj", args.pictures, first, second))
    print(rows[-1], flush=True)
    print(f"\n{args.pictures} pictures of 224 x 224, {args.at_once} requests at a time, one token each\n")
    print("| side | pictures/s (first turns) | first turn p50 / p95 | second turn p50 / p95 |")
    print("|---|---:|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
