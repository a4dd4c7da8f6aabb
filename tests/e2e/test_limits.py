"""Per-key limits: requests, sessions, audio seconds and frames per minute (429, or an error event)."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import httpx
import websockets

from tests.helpers import Realtime, running_stack
from tests.pictures import data_url, picture
from tests.speech import silence

KEYS = {"http": "sk-limits-http-000000", "ws": "sk-limits-sessions-0000", "media": "sk-limits-media-00000"}


async def _connect(url: str, key: str) -> tuple[Realtime, object]:
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"})
    return Realtime(ws), ws


async def test_budgets_per_key(fresh_redis_url, tmp_path):
    limits = {
        "api_keys": json.dumps(list(KEYS.values())),
        "limit_requests_per_minute": "3",
        "limit_sessions_per_key": "2",
        "limit_audio_seconds_per_minute": "5",
        "limit_frames_per_minute": "2",
    }
    if time.time() % 60 > 45:  # the budgets are per clock minute: start well inside one
        await asyncio.sleep(61 - time.time() % 60)
    with running_stack(fresh_redis_url, tmp_path, decoders=0, audio=0, image=0, **limits) as stack:
        headers = {"Authorization": f"Bearer {KEYS['http']}"}
        async with httpx.AsyncClient(base_url=stack.http, headers=headers) as http:
            assert [(await http.get("/v1/models")).status_code for _ in range(3)] == [200, 200, 200]
            refused = await http.get("/v1/models")
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert (await http.get("/healthz")).status_code == 200  # not a /v1 route
            other = await http.get("/v1/models", headers={"Authorization": f"Bearer {KEYS['ws']}"})
            assert other.status_code == 200  # budgets are per key

        # Sessions: two at once; a third is told why and closed; closing one makes room.
        first, ws1 = await _connect(stack.ws, KEYS["ws"])
        second, ws2 = await _connect(stack.ws, KEYS["ws"])
        assert (await first.next())["type"] == "session.created"
        assert (await second.next())["type"] == "session.created"
        third, ws3 = await _connect(stack.ws, KEYS["ws"])
        error = await third.next()
        assert error["type"] == "error" and error["error"]["code"] == "rate_limit_exceeded"
        await ws1.close()  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)
        fourth, ws4 = await _connect(stack.ws, KEYS["ws"])
        assert (await fourth.next())["type"] == "session.created"
        for ws in (ws2, ws3, ws4):
            await ws.close()  # type: ignore[attr-defined]

        # Media and responses on one session: refused past the budget, the session goes on.
        rt, ws = await _connect(stack.ws, KEYS["media"])
        await rt.until("session.created")
        await rt.send(
            {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}}
        )
        await rt.until("session.updated")
        chunk = base64.b64encode(silence(0.5)).decode()
        for _ in range(12):  # 6 s of audio against a 5 s budget
            await rt.send({"type": "input_audio_buffer.append", "audio": chunk})
        error = (await rt.until("error"))[-1]["error"]
        assert error["code"] == "rate_limit_exceeded" and "audio seconds" in error["message"]
        frame = {"type": "input_image", "image_url": data_url(picture("circle", "red"))}
        for _ in range(3):
            await rt.send(
                {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [frame]}}
            )
        while "frames" not in (error := (await rt.until("error"))[-1]["error"])["message"]:
            assert "audio seconds" in error["message"]  # the other chunks past the audio budget
        assert error["code"] == "rate_limit_exceeded"
        assert sum(e["type"] == "conversation.item.added" for e in rt.events) == 2
        await rt.send({"type": "input_audio_buffer.clear"})
        await rt.send({"type": "response.create", "response": {"conversation": "none"}})
        updated = (await rt.until("rate_limits.updated"))[-1]["rate_limits"][0]
        assert updated["name"] == "requests" and updated["limit"] == 3 and updated["remaining"] == 2
        await ws.close()  # type: ignore[attr-defined]
