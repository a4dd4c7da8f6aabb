"""The image worker with a real model and Redis: two sessions' pictures at once, batched, kept apart."""

import asyncio
import json

from tests.helpers import Realtime, running_stack
from tests.helpers import realtime as connect
from tests.pictures import data_url, image_message, picture


async def _send_pictures(rt: Realtime, colour: str, n: int) -> list[dict]:
    for i in range(n):  # pictures with a question: never dropped as frames
        await rt.send(image_message(data_url(picture("circle", colour, seed=i)), "What is it?"))
    done = []
    while len(done) < n:
        event = await rt.next(timeout=60)
        if event["type"] == "conversation.item.done" and event["item"]["role"] == "user":
            done.append(event["item"])
    return done


async def test_two_sessions_at_once_are_batched_and_kept_apart(fresh_redis_url, tmp_path):
    # A batch waits up to 100 ms for more pictures, so the pictures of both sessions share passes.
    with running_stack(fresh_redis_url, tmp_path, decoders=0, audio=0, image=1, image_batch_wait_ms="100") as stack:
        async with connect(stack.ws) as red, connect(stack.ws) as blue:
            reds, blues = await asyncio.gather(_send_pictures(red, "red", 8), _send_pictures(blue, "blue", 8))
            red_ids = {e["item"]["id"] for e in red.events if e["type"] == "conversation.item.added"}
            blue_ids = {e["item"]["id"] for e in blue.events if e["type"] == "conversation.item.added"}
            await asyncio.sleep(1.1)  # the worker publishes its batch sizes at most once a second
            await _send_pictures(red, "red", 1)
        client = stack.redis()
        workers = [json.loads(v) for v in client.mget(client.keys("mmtest:worker:image:*"))]
    assert all("colour: red, shape: circle" in item["content"][0]["description"] for item in reds)
    assert all("colour: blue, shape: circle" in item["content"][0]["description"] for item in blues)
    assert {item["id"] for item in reds} == red_ids and {item["id"] for item in blues} == blue_ids
    sizes = {int(k): v for w in workers for k, v in w.get("batch_sizes", {}).items()}
    assert sum(k * v for k, v in sizes.items()) == 17
    assert max(sizes) > 1, f"pictures that arrive together share a forward pass: {sizes}"
