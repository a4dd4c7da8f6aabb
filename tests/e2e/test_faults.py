"""Faults the service must survive or report: a worker kind absent altogether."""

from __future__ import annotations

import time

import httpx

from tests.helpers import realtime, running_stack, user_message
from tests.speech import silence, speak, wav_bytes


async def test_a_missing_worker_kind_fails_fast_and_clearly(fresh_redis_url, tmp_path):
    with running_stack(fresh_redis_url, tmp_path, decoders=0, audio=0, image=0) as stack:
        async with httpx.AsyncClient(base_url=stack.http, timeout=60) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert "no decode worker is ready: none is running" in ready.json()["reasons"]

            started = time.monotonic()
            async with realtime(stack.ws) as rt:
                await rt.send(user_message("Hello?"))
                await rt.send({"type": "response.create"})
                done = (await rt.until("response.done", timeout=30))[-1]["response"]
            assert done["status"] == "failed"
            error = done["status_details"]["error"]
            assert error["code"] == "decoder_unavailable" and "No decode worker is running" in error["message"]
            assert time.monotonic() - started < 15  # not the 300 s queue timeout

            body = {"model": "qwen2.5-coder-0.5b-instruct", "messages": [{"role": "user", "content": "Hi"}]}
            reply = await http.post("/v1/chat/completions", json=body)
            assert reply.status_code == 503 and "No decode worker" in reply.json()["error"]["message"]

            audio = wav_bytes(speak("Hello there.") + silence(0.2))
            heard = await http.post(
                "/v1/audio/transcriptions", files={"file": ("a.wav", audio)}, data={"model": "whisper-1"}
            )
            assert heard.status_code == 503 and "No audio worker" in heard.json()["error"]["message"]
