"""Audio, image and speech workers killed in the middle of their work: the work is redone, the reply right.

Each victim is frozen (SIGSTOP) at a moment it holds the work, then SIGKILLed, so the kill lands
mid-task every run: an image worker that has taken a picture's task off the queue, an audio worker
holding a session's stream lock (leases of 2 s: a dead worker's presence lapses in 6 s). A fresh
worker of the kind is then started. With a Redis broker the dead worker's task would come back only
after the visibility timeout (minutes); the gateway following the reply sends it again
(shared/media_tasks.py) and the new audio worker takes the dead one's lock over (shared/recovery.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import Stack, make_stack, realtime, stream_audio, user_message, wait_for
from tests.pictures import data_url, image_message, picture
from tests.speech import silence, speak, wav_bytes

NO_VAD = {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}}


@contextlib.contextmanager
def _decoder_and(
    kind: str, name: str, redis_url: str, log_dir: Path, **settings: str
) -> Iterator[tuple[Stack, subprocess.Popen[bytes]]]:
    """A decoder, the gateway, and one worker of `kind`: the one the test freezes or kills."""
    stack = make_stack(redis_url, log_dir, **settings)
    try:
        stack.start_worker("decode", "decode-0")
        worker = stack.start_worker(kind, name)
        stack.start_gateway()
        stack.wait_ready("decode")
        stack.wait_ready(kind)
        yield stack, worker
    finally:
        stack.close()


def _wait_stopped(pid: int) -> None:
    """Until the process is stopped (state T in /proc), for at most a second."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "T":
            return
        time.sleep(0.001)


def _kill(proc) -> None:  # noqa: ANN001 - a Popen
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def test_image_worker_killed_holding_a_picture(fresh_redis_url, tmp_path):
    with _decoder_and("image", "image-victim", fresh_redis_url, tmp_path, lease_ttl_s="2") as (stack, victim):
        broker = stack.redis()
        async with realtime(stack.ws) as rt:
            os.killpg(victim.pid, signal.SIGSTOP)
            started = time.monotonic()
            await rt.send(
                image_message(
                    data_url(picture("square", "blue")), "What shape is in this picture, and what colour is it?"
                )
            )
            await rt.send({"type": "response.create"})
            # The frozen worker's pending read takes the task off the queue: nothing waits there.
            await asyncio.to_thread(wait_for, lambda: broker.llen("image") == 0, 10, "the task to leave the queue")
            await asyncio.sleep(1.0)
            _kill(stack.procs.pop("image-victim"))
            stack.start_worker("image", "image-1")
            events = await rt.until("response.done", timeout=90)
            took = time.monotonic() - started
        done = events[-1]["response"]
        assert done["status"] == "completed", done
        item = next(e for e in events if e["type"] == "conversation.item.done" and e["item"]["role"] == "user")
        assert "colour: blue, shape: square" in item["item"]["content"][0]["description"]
        reply = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta").lower()
        assert "blue" in reply and "square" in reply, reply
        assert not [e for e in events if e["type"] == "error"], events
        assert "sending it again" in (tmp_path / "gateway.log").read_text()
        print(f"answered {took:.1f} s after the picture was sent")
        assert took < 30  # well before the decoder gives up on the picture, and the 660 s visibility timeout


async def test_audio_worker_killed_mid_stream(fresh_redis_url, tmp_path):
    with _decoder_and("audio", "audio-victim", fresh_redis_url, tmp_path, lease_ttl_s="2") as (stack, victim):
        client = stack.redis()
        question = "What is the capital of France?"
        async with realtime(stack.ws) as rt:
            await rt.send(NO_VAD)
            await rt.until("session.updated")
            sid = rt.events[0]["session"]["id"]
            lock = f"mmtest:audio:{sid}:lock"
            speech = silence(0.3) + speak(question) + silence(0.5)
            sender = asyncio.create_task(stream_audio(rt, speech))

            def frozen_holding_the_lock() -> bool:
                if not client.exists(lock):
                    return False
                os.killpg(victim.pid, signal.SIGSTOP)
                _wait_stopped(victim.pid)  # a stop lands asynchronously: the worker could still let go
                if client.exists(lock):
                    return True
                os.killpg(victim.pid, signal.SIGCONT)  # it let go just then: try again
                return False

            await asyncio.to_thread(wait_for, frozen_holding_the_lock, 20, "the audio worker to hold the stream", 0.01)
            _kill(stack.procs.pop("audio-victim"))
            killed = time.monotonic()
            stack.start_worker("audio", "audio-1")
            await sender
            await rt.send({"type": "input_audio_buffer.commit"})
            await rt.send({"type": "response.create"})
            events = await rt.until("response.done", timeout=90)
            took = time.monotonic() - killed
        done = events[-1]["response"]
        assert done["status"] == "completed", done
        transcript = next(
            e["transcript"] for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"
        )
        assert "capital" in transcript.lower() and "france" in transcript.lower(), transcript
        reply = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        assert "Paris" in reply, reply
        assert "taking over" in (tmp_path / "audio-1.log").read_text()
        print(f"answered {took:.1f} s after the audio worker was killed")
        assert took < 30


async def test_slow_workers_hit_their_time_limits_and_the_client_is_told(fresh_redis_url, tmp_path):
    """A decoder past `decode_time_limit_s`, and a frozen image worker past `transcript_wait_s`."""
    with _decoder_and(
        "image", "image-frozen", fresh_redis_url, tmp_path, decode_time_limit_s="3", transcript_wait_s="4"
    ) as (stack, frozen):
        async with realtime(stack.ws) as rt:
            started = time.monotonic()
            await rt.send(user_message("Count from 1 to 1000, one number per line."))
            await rt.send({"type": "response.create", "response": {"max_output_tokens": 4000}})
            done = (await rt.until("response.done", timeout=60))[-1]["response"]
            assert done["status"] == "failed", done
            assert done["status_details"]["error"]["code"] == "timeout", done
            assert "time limit" in done["status_details"]["error"]["message"]
            assert time.monotonic() - started < 20

            os.killpg(frozen.pid, signal.SIGSTOP)  # a worker that takes the picture and never answers
            await rt.send(image_message(data_url(picture("circle", "red")), "Say hello."))
            await rt.send({"type": "response.create"})
            events = await rt.until("response.done", timeout=60)
            errors = [e for e in events if e["type"] == "error"]
            assert [e["error"]["code"] for e in errors] == ["media_unavailable"], errors
            assert "not described within 4 s" in errors[0]["error"]["message"]
            assert events[-1]["response"]["status"] == "completed"  # answered without the picture

            text, final = await rt.ask("What is the capital of France? Answer in one word.")
            assert final["response"]["status"] == "completed" and "Paris" in text
        os.killpg(frozen.pid, signal.SIGCONT)


async def test_speech_worker_killed_mid_piece(fresh_redis_url, tmp_path):
    """A speech worker frozen holding a piece of a reply, then killed: the piece is spoken by the next."""
    import httpx

    stack = make_stack(fresh_redis_url, tmp_path, lease_ttl_s="2")
    try:
        victim = stack.start_worker("speech", "speech-victim")
        stack.start_worker("audio", "audio-0")
        stack.start_gateway()
        stack.wait_ready("speech")
        stack.wait_ready("audio")
        client = stack.redis()
        text = "The first sentence is short. The second one is a little longer. The third sentence ends it."
        body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}

        def frozen_holding_a_piece() -> bool:
            running = [k for k in client.scan_iter("mmtest:response:speech_*:lease")]
            if not running:
                return False
            os.killpg(victim.pid, signal.SIGSTOP)
            _wait_stopped(victim.pid)
            if any(client.exists(k) for k in running):
                return True
            os.killpg(victim.pid, signal.SIGCONT)  # it finished the piece just then: try again
            return False

        async with httpx.AsyncClient(base_url=stack.http, timeout=90) as http:
            reply = asyncio.create_task(http.post("/v1/audio/speech", json=body))
            await asyncio.to_thread(wait_for, frozen_holding_a_piece, 20, "the speech worker to hold a piece", 0.002)
            _kill(stack.procs.pop("speech-victim"))
            killed = time.monotonic()
            stack.start_worker("speech", "speech-1")
            pcm = (await reply).content
            took = time.monotonic() - killed
            heard = (
                (
                    await http.post(
                        "/v1/audio/transcriptions",
                        data={"model": "whisper-1"},
                        files={"file": ("reply.wav", wav_bytes(pcm))},
                    )
                )
                .json()["text"]
                .lower()
            )
        assert "first" in heard and "third" in heard and "ends" in heard, heard
        assert "stopped renewing its lease" in (tmp_path / "gateway.log").read_text()
        print(f"spoken {took:.1f} s after the speech worker was killed")
        assert took < 30
    finally:
        stack.close()
