"""Two audio worker processes on one session: the same transcript, in order, nothing twice."""

import asyncio
import re

from celery import Celery

from shared.celery_app import TASK_AUDIO_STREAM
from tests.helpers import Realtime, Stack, running_stack, stream_audio
from tests.helpers import realtime as connect
from tests.speech import silence, speak

PASSAGE = "Please send the quarterly report to finance by Friday. We will discuss it in the meeting on Monday morning."


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w' ]+", " ", text.lower()).split()


async def _transcribe(rt: Realtime, extra_tasks: Celery | None = None) -> tuple[str, str]:
    await rt.send(
        {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}}
    )
    await rt.until("session.updated")
    session_id = rt.events[0]["session"]["id"]
    sender = asyncio.create_task(stream_audio(rt, silence(0.3) + speak(PASSAGE) + silence(0.3)))
    if extra_tasks is not None:  # duplicate and redelivered tasks must change nothing
        for _ in range(3):
            await asyncio.sleep(1.0)
            extra_tasks.send_task(TASK_AUDIO_STREAM, kwargs={"request": {"v": 1, "session_id": session_id}})
    await sender
    await rt.send({"type": "input_audio_buffer.commit"})
    done = (await rt.until("conversation.item.input_audio_transcription.completed", timeout=60))[-1]
    deltas = "".join(e["delta"] for e in rt.events if e["type"] == "conversation.item.input_audio_transcription.delta")
    return done["transcript"], deltas


async def test_two_workers_give_the_one_worker_transcript(stack: Stack, fresh_redis_url, tmp_path):
    async with connect(stack.ws) as rt:
        one_worker, _ = await _transcribe(rt)
    with running_stack(fresh_redis_url, tmp_path, decoders=0, audio=2, image=0) as two:
        celery = Celery(broker=two.redis_url, set_as_current=False)
        celery.conf.update(task_serializer="json", accept_content=["json"], task_routes={"audio.*": {"queue": "audio"}})
        async with connect(two.ws) as rt:
            transcript, deltas = await _transcribe(rt, extra_tasks=celery)
            completed = [e for e in rt.events if e["type"].endswith("transcription.completed")]
            await asyncio.sleep(1.0)
            assert len(completed) == 1
        celery.close()
        logs = [(tmp_path / f"audio-{i}.log").read_text() for i in range(2)]
    assert all("Task audio.stream" in log for log in logs), "both workers took part"
    assert deltas.strip() == transcript, "every word sent once, in order"
    words = _words(transcript)
    assert not any(a == b for a, b in zip(words, words[1:], strict=False)), transcript
    expected = _words(one_worker)
    assert words == expected or _distance(words, expected) <= 2, (transcript, one_worker)
    assert {"quarterly", "report", "meeting", "monday"} <= set(words)


def _distance(a: list[str], b: list[str]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[len(b)]


async def test_redelivered_stream_task_changes_nothing(stack: Stack):
    """Copies of audio.stream delivered after the session's audio is processed add no events."""
    async with connect(stack.ws) as rt:
        transcript, _ = await _transcribe(rt)
        session_id = rt.events[0]["session"]["id"]
        events_key = f"mmtest:session:{session_id}:events"
        before = stack.redis().xlen(events_key)
        celery = Celery(broker=stack.redis_url, set_as_current=False)
        celery.conf.update(task_serializer="json", accept_content=["json"], task_routes={"audio.*": {"queue": "audio"}})
        for _ in range(3):
            celery.send_task(TASK_AUDIO_STREAM, kwargs={"request": {"v": 1, "session_id": session_id}})
        celery.close()
        await asyncio.sleep(1.5)
        assert stack.redis().xlen(events_key) == before
        assert transcript
