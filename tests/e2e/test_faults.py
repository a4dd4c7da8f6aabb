"""Faults the service must survive or report: a worker kind absent altogether, Redis stopping."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from tests.helpers import OwnRedis, realtime, running_stack, user_message
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


async def test_redis_stopped_for_ten_seconds_and_restarted(own_redis: OwnRedis, tmp_path):
    """Gateway and workers reconnect by themselves; new sessions work within 5 s of Redis coming back."""
    url = own_redis.url
    with running_stack(url, tmp_path / "logs", decoders=1, audio=0, image=0, lease_ttl_s="2") as stack:
        async with realtime(stack.ws) as rt:
            await rt.send(user_message("What is the capital of France? Answer in one word."))
            await rt.send({"type": "response.create"})
            assert (await rt.until("response.done"))[-1]["response"]["status"] == "completed"
        own_redis.stop()
        await asyncio.sleep(10)
        own_redis.start()
        back = time.monotonic()
        answered = None

        async def one_turn() -> str:
            async with realtime(stack.ws, temperature=None) as rt:
                await rt.send(user_message("What is the capital of Italy? Answer in one word."))
                await rt.send({"type": "response.create"})
                while (event := await rt.next())["type"] not in ("response.done", "error"):
                    pass
                return (
                    "completed"
                    if event["type"] == "response.done" and event["response"]["status"] == "completed"
                    else "no"
                )

        while answered is None and time.monotonic() - back < 60:
            try:
                if await asyncio.wait_for(one_turn(), 15) == "completed":
                    answered = time.monotonic() - back
                else:
                    await asyncio.sleep(0.5)
            except Exception:  # noqa: BLE001 - the gateway or the decoder may still be reconnecting
                await asyncio.sleep(0.5)
        assert answered is not None, stack.logs()
        assert answered < 10, answered  # a new session's first answer, the decoder's reconnection included
        print(f"answered {answered:.1f} s after Redis came back")


async def test_a_reply_in_flight_when_redis_stops_ends_clearly(own_redis: OwnRedis, tmp_path):
    """Redis stops mid-reply for 10 s: the client is told (the reply completes or fails with a message)."""
    url = own_redis.url
    with running_stack(url, tmp_path / "logs", decoders=1, audio=0, image=0, lease_ttl_s="2") as stack:
        async with realtime(stack.ws) as rt:
            await rt.send(user_message("Count from 1 to 300, one number per line."))
            await rt.send({"type": "response.create", "response": {"max_output_tokens": 1500}})
            await rt.until("response.output_text.delta", timeout=60)
            own_redis.stop()
            stopped = time.monotonic()
            event = None
            while event is None or event["type"] not in ("response.done", "error"):
                event = await rt.next(timeout=60)
            took = time.monotonic() - stopped
            await asyncio.sleep(max(0.0, 10 - took))
            own_redis.start()
            print(f"\nthe reply ended {took:.1f} s after Redis stopped: {event}")
            # The reply ends as a response should, saying why.
            assert event["type"] == "response.done", event
            status = event["response"]["status"]
            assert status in ("completed", "failed"), event
            if status == "failed":
                assert "lost its connection to Redis" in event["response"]["status_details"]["error"]["message"]
            assert took < 10  # told while Redis is still down, not after
        # A new session on the same gateway answers.
        async with realtime(stack.ws) as rt:
            text, done = await rt.ask("What is the capital of France? Answer in one word.")
            assert done["response"]["status"] == "completed" and "Paris" in text, stack.logs()

        # The same over HTTP: a streamed chat completion ends with an error chunk and [DONE].
        body = {
            "model": "qwen2.5-coder-0.5b-instruct",
            "messages": [{"role": "user", "content": "Count from 1 to 300, one number per line."}],
            "max_tokens": 1500,
            "stream": True,
        }
        lines: list[str] = []
        async with (
            httpx.AsyncClient(base_url=stack.http, timeout=60) as http,
            http.stream("POST", "/v1/chat/completions", json=body) as reply,
        ):
            async for line in reply.aiter_lines():
                if line.startswith("data: "):
                    lines.append(line.removeprefix("data: "))
                    if len(lines) == 3:  # the role chunk and two of text
                        own_redis.stop()
        assert lines[-1] == "[DONE]", lines[-3:]
        error = json.loads(lines[-2])["error"]
        assert "lost its connection to Redis" in error["message"], error
        own_redis.start()


async def test_the_gateways_redis_connections_survive_a_restart(own_redis: OwnRedis):
    """Every pooled connection points at the old server after a restart; none may fail a command."""
    from gateway.services import redis_client

    client = redis_client(own_redis.url)
    # Fill the pool with several connections at once.
    await asyncio.gather(*(client.blpop([f"nothing-{i}"], timeout=0.2) for i in range(4)))
    assert len(client.connection_pool._available_connections) >= 4
    own_redis.stop()
    own_redis.start()
    for i in range(8):  # more commands than pooled connections, each on whichever the pool hands out
        assert await client.set(f"after-{i}", "ok") is True
    await client.aclose()
