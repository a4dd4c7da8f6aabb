"""Pictures per second: the image worker (micro-batching) against open_clip called directly.

Whole path: SESSIONS websocket sessions each send PER_SESSION pictures (data URLs) at once;
the clock stops when every picture's `conversation.item.done` has arrived. It goes through the
gateway, Redis, Celery and one image worker whose micro-batcher embeds pictures that arrive
together in one forward pass. Baselines in the same run, same model, same thread count: decode +
preprocess + `encode_image` one picture at a time, and in batches of the worker's batch size.

    python -m bench.image                      # our mmstream-clip-tiny
    python -m bench.image --model ViT-B-32     # any open_clip architecture, with random weights

No pretrained CLIP is reachable offline, and the cost of a forward pass does not depend on the
weights: `--model` writes a seeded random-weight checkpoint of that architecture once (cached in
~/.cache/mmstream/bench) and gives it to the worker as `MMSTREAM_CLIP_PRETRAINED`, as a real
checkpoint would be given.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import time
from pathlib import Path

import redis
import torch
import websockets
from PIL import Image

from bench.stack import bench_stack
from tests.pictures import data_url, image_message, picture
from training.synthetic import COLOURS, SHAPES
from workers.image.clip import BUNDLED_WEIGHTS, ClipModel
from workers.image.labels import DEFAULT_GROUPS

SESSIONS = 8
PER_SESSION = 25


def _pictures(n: int, offset: int) -> list[str]:
    colours, shapes = list(COLOURS), list(SHAPES)
    return [
        data_url(picture(shapes[i % len(shapes)], colours[(i // len(shapes)) % len(colours)], seed=offset + i))
        for i in range(n)
    ]


async def _session(url: str, pictures: list[str]) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()
        for picture_url in pictures:  # with a question, so these are pictures and never dropped frames
            await ws.send(json.dumps(image_message(picture_url, "What is this?")))
        done = 0
        while done < len(pictures):
            event = json.loads(await ws.recv())
            done += event["type"] == "conversation.item.done" and event["item"]["role"] == "user"
            if event["type"] == "error":
                raise RuntimeError(event["error"])


async def _through_worker(url: str) -> float:
    batches = [_pictures(PER_SESSION, 1000 * s) for s in range(SESSIONS)]
    started = time.perf_counter()
    await asyncio.gather(*(_session(url, b) for b in batches))
    return SESSIONS * PER_SESSION / (time.perf_counter() - started)


def _direct(clip: ClipModel, raws: list[bytes], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(raws), batch):
        pixels = [clip.pixels(Image.open(io.BytesIO(r)).convert("RGB")) for r in raws[i : i + batch]]
        clip.embed(torch.stack(pixels))
    return len(raws) / (time.perf_counter() - started)


def _random_checkpoint(name: str) -> Path:
    """A seeded random-weight checkpoint of an open_clip architecture (written once)."""
    import open_clip

    path = Path.home() / ".cache" / "mmstream" / "bench" / f"{name}-random-seed0.pt"
    if not path.exists():
        torch.manual_seed(0)
        model = open_clip.create_model(name, pretrained=None)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(model.state_dict(), tmp)
        tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default="mmstream-clip-tiny", help="an open_clip architecture, random weights")
    args = parser.parse_args()
    pretrained = str(BUNDLED_WEIGHTS) if args.model == "mmstream-clip-tiny" else str(_random_checkpoint(args.model))
    worker = {
        "image_threads": str(args.threads),
        "image_batch_size": str(args.batch),
        "image_concurrency": str(args.batch),
    }
    if args.model != "mmstream-clip-tiny":
        worker |= {"clip_model": args.model, "clip_pretrained": pretrained}
    with bench_stack({"decode": 1, "audio": 1, "image": 1}, **worker) as stack:
        asyncio.run(_session(stack.ws, _pictures(4, 99_000)))  # warm-up
        path = asyncio.run(_through_worker(stack.ws))
        time.sleep(1.1)
        asyncio.run(_session(stack.ws, _pictures(1, 98_000)))  # makes the worker publish its batch sizes
        client = redis.Redis.from_url(stack.redis_url)
        workers = [json.loads(v) for v in client.mget(client.keys("mmstream:worker:image:*"))]
        batches = workers[0].get("batch_sizes", {}) if workers else {}

    torch.set_num_threads(args.threads)
    clip = ClipModel(args.model, pretrained, DEFAULT_GROUPS)
    import base64

    raws = [base64.b64decode(u.split(",", 1)[1]) for u in _pictures(SESSIONS * PER_SESSION, 0)]
    one = _direct(clip, raws, 1)
    batched = _direct(clip, raws, args.batch)
    print(f"{args.model}: {SESSIONS * PER_SESSION} pictures, torch threads {args.threads}, worker batch {args.batch}")
    print(f"{'through the worker (ws, Celery, Redis, micro-batching)':58}{path:8.1f} pictures/s")
    print(f"{'open_clip directly, batch 1':58}{one:8.1f} pictures/s")
    print(f"{f'open_clip directly, batch {args.batch}':58}{batched:8.1f} pictures/s")
    print(f"worker batch sizes (size: count): {batches}")
    print(
        f"ratios: worker / direct batch 1 = {path / one:.2f}x, worker / direct batch {args.batch} = "
        f"{path / batched:.2f}x, direct batch {args.batch} / batch 1 = {batched / one:.2f}x"
    )


if __name__ == "__main__":
    main()
