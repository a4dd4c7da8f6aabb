"""Pictures over /v1/realtime: described by the image worker (our CLIP), answered by the decoder."""

import asyncio
import base64
import io

import pytest
from PIL import Image

from tests.helpers import Stack, realtime
from tests.pictures import data_url, image_message, picture

QUESTION = "What shape is in this picture, and what colour is it?"


@pytest.mark.parametrize(
    ("shape", "colour"),
    [("circle", "red"), ("square", "blue"), ("triangle", "green"), ("star", "yellow"), ("cross", "purple")],
)
async def test_picture_questions_are_answered(stack: Stack, shape: str, colour: str):
    async with realtime(stack.ws) as rt:
        await rt.send(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "Answer in one short sentence."}}
        )
        await rt.until("session.updated")
        await rt.send(image_message(data_url(picture(shape, colour)), QUESTION))
        await rt.send({"type": "response.create"})
        events = await rt.until("response.done", timeout=60)
    reply = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta").lower()
    assert shape in reply and colour in reply, reply
    done = next(e for e in events if e["type"] == "conversation.item.done" and e["item"]["role"] == "user")
    assert f"colour: {colour}, shape: {shape}" in done["item"]["content"][0]["description"]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
async def test_formats(stack: Stack, fmt: str):
    async with realtime(stack.ws) as rt:
        await rt.send(image_message(data_url(picture("circle", "red"), fmt)))
        done = (await rt.until("conversation.item.done"))[-1]
    assert "colour: red, shape: circle" in done["item"]["content"][0]["description"]


async def test_embedding_is_stored_with_its_shape(stack: Stack):
    import json

    import redis

    async with realtime(stack.ws) as rt:
        await rt.send(image_message(data_url(picture("square", "black"))))
        done = (await rt.until("conversation.item.done"))[-1]
        key = f"mmtest:image:{rt.events[0]['session']['id']}:item:{done['item']['id']}:0:emb"
        stored = redis.Redis.from_url(stack.redis_url).hgetall(key)
    header = json.loads(stored[b"header"])
    assert header == {
        "v": 1,
        "model": "mmstream-clip-tiny",
        "dtype": "float32",
        "shape": [128],
        "layout": [],
        "causal": True,
    }
    assert len(stored[b"data"]) == 128 * 4


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


async def test_bad_pictures_get_errors_and_the_session_goes_on(stack: Stack):
    png = _png((64, 64))
    b64 = base64.b64encode
    cases = [
        ("data:image/png;base64,@@@@", "invalid_image"),
        ("data:image/png;base64," + b64(b"just some text, not a picture").decode(), "invalid_image"),
        ("data:text/plain;base64," + b64(png).decode(), "invalid_image"),
        ("data:image/png;base64," + b64(_png((5000, 4000))).decode(), "invalid_image"),  # too many pixels
        ("https://example.com/cat.png", "invalid_image"),  # remote media are off
        ("file:///etc/passwd", "invalid_image"),
    ]
    async with realtime(stack.ws) as rt:
        for url, code in cases:
            await rt.send(image_message(url, "what is this?"))
            error = (await rt.until("error"))[-1]["error"]
            assert error["code"] == code, (url[:40], error)
            assert error["param"] == "item.content.image_url"
        # Truncated: the header is fine, so the gateway accepts it and the worker reports the failure.
        await rt.send(image_message("data:image/png;base64," + b64(_png((64, 64))[:80]).decode()))
        failure = (await rt.until("error"))[-1]["error"]
        assert failure["code"] == "invalid_image" and "truncated" in failure["message"]
        await rt.send(image_message(data_url(picture("circle", "red")), QUESTION))
        await rt.send({"type": "response.create"})
        events = await rt.until("response.done", timeout=60)
        assert events[-1]["response"]["status"] == "completed"
        # No item was added for a refused picture.
        assert sum(e["type"] == "conversation.item.added" for e in rt.events) == 3


async def test_camera_frames_newest_wins_and_duplicates_are_dropped(stack: Stack):
    async with realtime(stack.ws) as rt:
        colours = ["red", "blue", "green", "yellow", "orange", "purple", "pink", "black"]
        for colour in colours:  # faster than one worker keeps up
            await rt.send(image_message(data_url(picture("square", colour))))
        await asyncio.sleep(0.1)
        dropped, described = [], []
        while len(dropped) + len(described) < len(colours):
            event = await rt.next(timeout=30)
            if event["type"] == "conversation.item.input_image.dropped":
                dropped.append(event)
            elif event["type"] == "conversation.item.done":
                described.append(event["item"]["id"])
        added = [e["item"]["id"] for e in rt.events if e["type"] == "conversation.item.added"]
        # The newest frame is always described (frames described in one batch may finish in any order).
        assert added[-1] in described, "the newest frame is always described"
        assert all(d["reason"] == "stale" for d in dropped)
        # The same frame again is a near-duplicate of the one kept: dropped, the kept one named.
        await rt.send(image_message(data_url(picture("square", "black"))))
        event = (await rt.until("conversation.item.input_image.dropped"))[-1]
        assert event["reason"] == "duplicate" and event["kept_item_id"] == added[-1]
        assert (await rt.next())["type"] == "conversation.item.deleted"
