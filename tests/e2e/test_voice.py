"""Voice replies through the running service: the speech worker's Piper voice, heard back by Whisper.

What is said is checked by listening: the audio goes back through `/v1/audio/transcriptions`
(the audio worker's Whisper), so a test passes only if the reply is real, intelligible speech.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import wave
from typing import Any

import av
import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError

from tests.e2e.test_batch import finished, read_lines, upload
from tests.e2e.test_hearing import QUESTION
from tests.helpers import Realtime, Stack, realtime, stream_audio, user_message, wait_for
from tests.speech import silence, speak, wav_bytes

MODEL = "qwen2.5-coder-0.5b-instruct"
SPOKEN = {"type": "realtime", "output_modalities": ["audio"], "audio": {"output": {"voice": "marin"}}}


def _client(stack: Stack) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{stack.http}/v1", api_key="not-needed", max_retries=0)


async def _heard(client: AsyncOpenAI, wav: bytes) -> str:
    return (await client.audio.transcriptions.create(model="whisper-1", file=("reply.wav", wav))).text.lower()


async def test_speech_endpoint_speaks_what_it_is_given(stack: Stack):
    async with _client(stack) as client:
        text = "The capital of France is Paris. It lies on the river Seine."
        wav = (
            await client.audio.speech.create(model="tts-1", voice="alloy", input=text, response_format="wav")
        ).content
        with wave.open(io.BytesIO(wav)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
            pcm = w.readframes(10**7)  # a streamed WAV says "length unknown": read what there is
        assert 2.0 < len(pcm) / 48000 < 8.0
        assert "piper" in [m.id async for m in client.models.list()]
        heard = await _heard(client, wav)
        assert "capital" in heard and "paris" in heard

        started, first, data = time.perf_counter(), 0.0, b""
        async with client.audio.speech.with_streaming_response.create(
            model="piper", voice="en_US-joe-medium", input=text * 3, response_format="pcm", speed=1.5
        ) as reply:
            async for chunk in reply.iter_bytes():
                first = first or time.perf_counter() - started
                data += chunk
        assert first and len(data) % 2 == 0 and len(data) > len(pcm) * 1.5  # three times the text, spoken faster

        mp3 = (
            await client.audio.speech.create(model="tts-1", voice="alloy", input="Hello there.")
        ).content  # default mp3
        with av.open(io.BytesIO(mp3)) as container:
            assert container.format.name == "mp3" and sum(f.samples for f in container.decode(audio=0)) > 12000

        with pytest.raises(BadRequestError, match="voice"):
            await client.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
        with pytest.raises(NotFoundError):
            await client.audio.speech.create(model="no-such-voice-model", voice="alloy", input="Hi.")
        with pytest.raises(BadRequestError):
            await client.audio.speech.create(model="tts-1", voice="alloy", input="")


async def _spoken_reply(rt: Realtime, question: str, **response: Any) -> tuple[list[dict[str, Any]], bytes]:
    await rt.send(user_message(question))
    await rt.send({"type": "response.create", "response": response} if response else {"type": "response.create"})
    events = await rt.until("response.done")
    audio = b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")
    return events, audio


async def test_realtime_reply_is_spoken_with_its_transcript(stack: Stack):
    async with _client(stack) as client, realtime(stack.ws) as rt:
        await rt.send({"type": "session.update", "session": {**SPOKEN, "instructions": "Answer in one sentence."}})
        (updated,) = [e for e in await rt.until("session.updated") if e["type"] == "session.updated"]
        assert updated["session"]["output_modalities"] == ["audio"]
        events, audio = await _spoken_reply(rt, "What is the capital of France?")
        kinds = [e["type"] for e in events]
        assert "response.output_text.delta" not in kinds
        first_audio = kinds.index("response.output_audio.delta")
        assert kinds.index("response.output_audio_transcript.delta") < first_audio
        tail = [k for k in kinds[first_audio:] if not k.endswith(".delta")]
        assert tail[:4] == [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
        ]
        (added,) = [e for e in events if e["type"] == "response.content_part.added"]
        assert added["part"]["type"] == "audio"
        (said,) = [e["transcript"] for e in events if e["type"] == "response.output_audio_transcript.done"]
        done = events[-1]["response"]
        assert done["status"] == "completed" and done["output_modalities"] == ["audio"]
        assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": said, "audio": None}]
        assert done["usage"]["output_token_details"]["audio_tokens"] == len(audio) // 2 * 1000 // 24000 // 50 > 0
        assert "paris" in said.lower() and "paris" in await _heard(client, wav_bytes(audio))

        # G.711 µ-law, 8 kHz: one byte a sample, from the same workers.
        await rt.send({"type": "session.update", "session": {"audio": {"output": {"format": {"type": "audio/pcmu"}}}}})
        await rt.until("session.updated")
        events, ulaw = await _spoken_reply(rt, "And the capital of Italy?")
        transcript = events[-1]["response"]["output"][0]["content"][0]["transcript"]
        assert events[-1]["response"]["status"] == "completed" and transcript
        assert 0.3 < len(ulaw) / 8000 < 20
        # A text response in a spoken session, by asking for it.
        events, none = await _spoken_reply(rt, "Say hi.", output_modalities=["text"])
        assert not none and any(e["type"] == "response.output_text.delta" for e in events)

        await rt.send({"type": "session.update", "session": {"audio": {"output": {"voice": "nobody"}}}})
        error = (await rt.until("error"))[-1]
        assert error["error"]["param"] == "session.audio.output.voice"


def _speech_jobs_left(stack: Stack) -> list[str]:
    client = stack.redis()
    states = [client.hget(k, "status") for k in client.scan_iter("mmtest:response:speech_*") if k.count(":") == 2]
    return [s for s in states if s in ("queued", "running")]


async def test_barge_in_silences_the_reply_and_truncate_keeps_what_was_heard(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send({"type": "session.update", "session": SPOKEN})
        await rt.until("session.updated")
        await rt.send(user_message("Count from one to forty in words, one number per sentence."))
        await rt.send({"type": "response.create"})
        said = ""
        while (event := await rt.next())["type"] != "response.output_audio.delta":
            assert event["type"] != "response.done", event
            said += event.get("delta", "") if event["type"] == "response.output_audio_transcript.delta" else ""
        item_id = event["item_id"]
        played = len(base64.b64decode(event["delta"]))
        await rt.send({"type": "response.cancel"})
        cancelled_at = time.perf_counter()
        late = []
        while (event := await rt.next())["type"] != "response.done":
            if event["type"] == "response.output_audio.delta":
                late.append(time.perf_counter() - cancelled_at)
                played += len(base64.b64decode(event["delta"]))
        assert all(t < 0.2 for t in late), late  # audio stops within 200 ms of the cancel
        done = event["response"]
        assert done["status"] == "cancelled" and done["status_details"]["reason"] == "client_cancelled"
        full = done["output"][0]["content"][0]["transcript"]
        assert len(said) < len(full)  # the first audio came while the reply was still being written

        played_ms = played // 2 * 1000 // 24000
        await rt.send({"type": "conversation.item.truncate", "item_id": item_id, "audio_end_ms": played_ms + 5000})
        assert (await rt.until("error"))[-1]["error"]["param"] == "audio_end_ms"
        await rt.send({"type": "conversation.item.truncate", "item_id": item_id, "audio_end_ms": played_ms // 2})
        truncated = (await rt.until("conversation.item.truncated"))[-1]
        assert truncated["audio_end_ms"] == played_ms // 2
        await rt.send({"type": "conversation.item.retrieve", "item_id": item_id})
        kept = (await rt.until("conversation.item.retrieved"))[-1]["item"]["content"][0]["transcript"]
        assert len(kept) < len(full) and full.strip().startswith(kept)
        # Nothing is left speaking for the cancelled reply.
        await asyncio.to_thread(wait_for, lambda: not _speech_jobs_left(stack), 10, "speech jobs to end")


async def test_chat_completion_with_audio(stack: Stack):
    async with _client(stack) as client:
        messages: Any = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
        reply = await client.chat.completions.create(
            model=MODEL, messages=messages, modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"}
        )
        audio = reply.choices[0].message.audio
        assert audio is not None and reply.choices[0].message.content is None and "paris" in audio.transcript.lower()
        wav = base64.b64decode(audio.data)
        with wave.open(io.BytesIO(wav)) as w:
            assert w.getnframes() > 12000  # a whole file: its true length in the header
        # What is heard is the reply; the tiny Whisper model has heard its first word as "Harris".
        heard = await _heard(client, wav)
        assert "paris" in heard or "capital of france" in heard, heard
        assert reply.usage is not None and reply.usage.completion_tokens_details is not None
        assert reply.usage.completion_tokens_details.audio_tokens

        stream = await client.chat.completions.create(
            model=MODEL,
            messages=messages,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "pcm16"},
            stream=True,
        )
        pcm, transcript = b"", ""
        async for chunk in stream:
            delta: Any = chunk.choices[0].delta if chunk.choices else None
            if delta is not None and delta.audio:
                pcm += base64.b64decode(getattr(delta.audio, "data", None) or "")
                transcript += getattr(delta.audio, "transcript", None) or ""
        assert "paris" in transcript.lower() and len(pcm) > 24000
        with pytest.raises(BadRequestError, match="audio"):
            await client.chat.completions.create(model=MODEL, messages=messages, modalities=["text", "audio"])


async def test_speech_batch(stack: Stack):
    async with _client(stack) as client:
        lines = [
            json.dumps(
                {
                    "custom_id": f"line-{n}",
                    "method": "POST",
                    "url": "/v1/audio/speech",
                    "body": {"model": "tts-1", "voice": "alloy", "input": text, "response_format": fmt},
                }
            )
            for n, (text, fmt) in enumerate([("Good morning, everyone.", "wav"), ("See you tomorrow.", "flac")])
        ]
        batch = await client.batches.create(
            input_file_id=await upload(client, lines), endpoint="/v1/audio/speech", completion_window="24h"
        )
        batch = await finished(client, batch.id)
        assert batch.status == "completed" and batch.request_counts is not None and batch.request_counts.completed == 2
        results = await read_lines(client, batch.output_file_id)
        body = results["line-0"]["response"]["body"]
        assert body["format"] == "wav" and body["duration_s"] > 0.5
        assert "morning" in await _heard(client, base64.b64decode(body["data"]))
        flac = base64.b64decode(results["line-1"]["response"]["body"]["data"])
        with av.open(io.BytesIO(flac)) as container:
            assert container.format.name == "flac"


async def test_speaking_over_a_spoken_reply_silences_it(stack: Stack):
    """Server VAD barge-in: the reply's audio stops within 200 ms of the user's speech being detected."""
    async with realtime(stack.ws) as rt:
        await rt.send({"type": "session.update", "session": {**SPOKEN, "max_output_tokens": 300}})
        await rt.until("session.updated")
        await rt.send(user_message("Count from 1 to 200, one number per line."))
        await rt.send({"type": "response.create"})
        while (await rt.next())["type"] != "response.output_audio.delta":
            pass
        sender = asyncio.create_task(stream_audio(rt, speak(QUESTION) + silence(1.2), pace=0.5))
        heard_at, late = 0.0, []
        while (event := await rt.next())["type"] != "response.done":
            if event["type"] == "input_audio_buffer.speech_started":
                heard_at = time.perf_counter()
            elif event["type"] == "response.output_audio.delta" and heard_at:
                late.append(time.perf_counter() - heard_at)
        assert heard_at and all(t < 0.2 for t in late), late
        cancelled = event["response"]
        assert cancelled["status"] == "cancelled" and cancelled["status_details"]["reason"] == "turn_detected"
        events = await rt.until("response.done", timeout=60)
        await sender
        answer = events[-1]["response"]
        assert answer["status"] in ("completed", "incomplete") and answer["output_modalities"] == ["audio"]
        assert any(e["type"] == "response.output_audio.delta" for e in events)  # the next turn is spoken too
        heard = [e for e in rt.events if e["type"] == "conversation.item.input_audio_transcription.completed"]
        assert heard and "capital" in heard[-1]["transcript"].lower(), "the interruption became the next turn"


async def _speak_over_a_reply(rt: Realtime, words: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start a long spoken reply, say `words` over it; the reply's response.done and what came after."""
    await rt.send({"type": "session.update", "session": {**SPOKEN, "max_output_tokens": 400}})
    await rt.until("session.updated")
    await rt.send(user_message("Count from 1 to 200, one number per line."))
    await rt.send({"type": "response.create"})
    while (await rt.next())["type"] != "response.output_audio.delta":
        pass
    await stream_audio(rt, silence(0.3) + speak(words) + silence(1.5), pace=1.0)
    events = await rt.until("response.done", timeout=90)
    return events[-1]["response"], events


async def test_a_backchannel_lets_the_spoken_reply_go_on(stack: Stack):
    async with realtime(stack.ws) as rt:
        done, events = await _speak_over_a_reply(rt, "okay")
        kinds = [e["type"] for e in events]
        assert done["status"] in ("completed", "incomplete"), done  # not cancelled
        assert "input_audio_buffer.speech_started" not in kinds and "input_audio_buffer.committed" not in kinds
        assert kinds.count("response.output_audio.delta") > 5  # the audio went on
        items = [e for e in rt.events if e["type"] == "conversation.item.added" and e["item"]["role"] == "user"]
        assert len(items) == 1  # the backchannel left no turn behind


async def test_a_real_interruption_over_a_spoken_reply_cancels_it(stack: Stack):
    async with realtime(stack.ws) as rt:
        done, _ = await _speak_over_a_reply(rt, "Wait, what is the capital of Italy?")
        assert done["status"] == "cancelled" and done["status_details"]["reason"] == "turn_detected"
        events = await rt.until("response.done", timeout=60)  # the interruption is the next turn
        heard = [e for e in rt.events if e["type"] == "conversation.item.input_audio_transcription.completed"]
        assert heard and "capital" in heard[-1]["transcript"].lower()
        assert events[-1]["response"]["status"] in ("completed", "incomplete")
