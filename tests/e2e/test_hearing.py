"""Speech over /v1/realtime: live transcripts, server VAD turns, barge-in, spoken questions answered.

The speech is real (espeak-ng), and so are the gateway, Redis, the audio worker (faster-whisper
tiny.en, Silero VAD) and the decoder.
"""

import asyncio
import base64
import json
import warnings

import numpy as np
import pytest
import redis

from tests.helpers import Stack, realtime, stream_audio, user_message
from tests.speech import silence, speak

QUESTION = "What is the capital of France?"
NO_VAD = {"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}}}


def _types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


async def test_spoken_question_is_answered_with_live_transcript(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "Answer in one short sentence."}}
        )
        await rt.until("session.updated")
        sender = asyncio.create_task(stream_audio(rt, silence(0.4) + speak(QUESTION) + silence(1.5)))
        events = await rt.until("response.done", timeout=60)
        await sender
    kinds = _types(events)
    for kind in (
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
    ):
        assert kind in kinds, kinds
    stopped = kinds.index("input_audio_buffer.speech_stopped")
    live = [e for e in events[:stopped] if e["type"] == "conversation.item.input_audio_transcription.delta"]
    assert live, "transcript deltas arrive while the person is still speaking"
    completed = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    deltas = "".join(e["delta"] for e in events if e["type"] == "conversation.item.input_audio_transcription.delta")
    assert deltas.strip() == completed["transcript"], "the transcript is exactly the deltas sent"
    assert "capital" in completed["transcript"].lower()
    reply = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert "Paris" in reply
    assert events[-1]["response"]["status"] == "completed"


async def test_client_commit_without_vad_then_response(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send(NO_VAD)
        await rt.until("session.updated")
        await stream_audio(rt, silence(0.3) + speak(QUESTION) + silence(0.3), pace=0)
        await rt.send({"type": "input_audio_buffer.commit"})
        committed = (await rt.until("input_audio_buffer.committed"))[-1]
        done = (await rt.until("conversation.item.input_audio_transcription.completed"))[-1]
        assert done["item_id"] == committed["item_id"]
        assert "capital" in done["transcript"].lower()
        # Whisper's encoder states are kept for fusion, their shape and dtype beside the bytes.
        key = f"mmtest:audio:{rt.events[0]['session']['id']}:item:{done['item_id']}:enc"
        stored = redis.Redis.from_url(stack.redis_url).hgetall(key)
        header = json.loads(stored[b"header"])
        assert header["dtype"] == "float16" and header["shape"][1] == 384
        assert header["shape"][0] == pytest.approx(done["usage"]["seconds"] * 50, abs=2)
        assert len(stored[b"data"]) == header["shape"][0] * header["shape"][1] * 2
        assert not [e for e in rt.events if e["type"].startswith("input_audio_buffer.speech")]
        text, response = await rt.ask("Answer the question I asked, in one sentence.")
        assert "Paris" in text


async def test_server_vad_takes_turns_in_order(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {
                        "input": {
                            "turn_detection": {
                                "type": "server_vad",
                                "create_response": False,
                                "silence_duration_ms": 400,
                            }
                        }
                    },
                },
            }
        )
        await rt.until("session.updated")
        pcm = silence(0.3) + speak("Good morning.") + silence(1.2) + speak("The weather is sunny today.") + silence(1.2)
        await stream_audio(rt, pcm, pace=0)
        first = (await rt.until("conversation.item.input_audio_transcription.completed"))[-1]
        second = (await rt.until("conversation.item.input_audio_transcription.completed"))[-1]
        assert "morning" in first["transcript"].lower()
        assert "sunny" in second["transcript"].lower()
        commits = [e for e in rt.events if e["type"] == "input_audio_buffer.committed"]
        assert [c["item_id"] for c in commits] == [first["item_id"], second["item_id"]]
        assert commits[1]["previous_item_id"] == first["item_id"]
        assert "response.created" not in _types(rt.events)


async def test_speaking_over_a_response_cancels_it(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send({"type": "session.update", "session": {"type": "realtime", "max_output_tokens": 300}})
        await rt.until("session.updated")
        await rt.send(user_message("Count from 1 to 200, one number per line."))
        await rt.send({"type": "response.create"})
        while (await rt.next())["type"] != "response.output_text.delta":
            pass
        sender = asyncio.create_task(stream_audio(rt, speak(QUESTION) + silence(1.2), pace=0.5))
        cancelled = (await rt.until("response.done"))[-1]["response"]
        assert cancelled["status"] == "cancelled"
        assert cancelled["status_details"]["reason"] == "turn_detected"
        events = await rt.until("response.done", timeout=60)
        await sender
        assert events[-1]["response"]["status"] in ("completed", "incomplete")
        heard = [e for e in rt.events if e["type"] == "conversation.item.input_audio_transcription.completed"]
        assert heard and "capital" in heard[-1]["transcript"].lower(), "the interruption became the next turn"


async def test_g711_mu_law_input(stack: Stack):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the standard encoder, to make the test input

    pcm8k = speak(QUESTION, rate=8000)
    ulaw = audioop.lin2ulaw(silence(0.3, 8000) + pcm8k + silence(0.3, 8000), 2)
    async with realtime(stack.ws) as rt:
        await rt.send(
            {
                "type": "session.update",
                "session": {
                    "type": "realtime",
                    "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None}},
                },
            }
        )
        await rt.until("session.updated")
        for i in range(0, len(ulaw), 800):
            await rt.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(ulaw[i : i + 800]).decode()})
        await rt.send({"type": "input_audio_buffer.commit"})
        done = (await rt.until("conversation.item.input_audio_transcription.completed"))[-1]
        assert "capital" in done["transcript"].lower()


async def test_item_created_with_audio_is_transcribed_and_answered(stack: Stack):
    pcm = silence(0.2) + speak(QUESTION) + silence(0.2)
    async with realtime(stack.ws) as rt:
        await rt.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_audio", "audio": base64.b64encode(pcm).decode()}],
                },
            }
        )
        added = (await rt.until("conversation.item.added"))[-1]
        assert added["item"]["content"][0]["transcript"] is None
        await rt.send({"type": "response.create"})
        events = await rt.until("response.done", timeout=60)
    completed = [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert completed and "capital" in completed[0]["transcript"].lower()
    assert "Paris" in "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


async def test_bad_audio_gets_errors_and_the_session_goes_on(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send(NO_VAD)
        await rt.until("session.updated")
        cases = [
            ({"type": "input_audio_buffer.append", "audio": "***not base64***"}, "invalid_audio"),
            (
                {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\x01\x02\x03").decode()},
                "invalid_audio",
            ),
            ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty"),
            ({"type": "input_audio_buffer.append"}, "missing_required_parameter"),
            (
                {
                    "type": "conversation.item.create",
                    "item": {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": "@@"}]},
                },
                "invalid_audio",
            ),
        ]
        for event, code in cases:
            await rt.send(event)
            error = (await rt.until("error"))[-1]["error"]
            assert error["code"] == code, (event, error)
            assert error["message"]
        # Too long: the buffer holds at most MMSTREAM_MAX_AUDIO_BUFFER_S (30 s in the test stack).
        await stream_audio(rt, silence(29), pace=0)
        await rt.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(silence(2)).decode()})
        assert (await rt.until("error"))[-1]["error"]["code"] == "audio_too_long"
        # The format cannot change under buffered audio.
        await rt.send(
            {
                "type": "session.update",
                "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcma"}}}},
            }
        )
        assert (await rt.until("error"))[-1]["error"]["param"] == "session.audio.input.format"
        await rt.send({"type": "input_audio_buffer.clear"})
        await rt.until("input_audio_buffer.cleared")
        # And it still works.
        await stream_audio(rt, silence(0.2) + speak(QUESTION) + silence(0.2), pace=0)
        await rt.send({"type": "input_audio_buffer.commit"})
        done = (await rt.until("conversation.item.input_audio_transcription.completed"))[-1]
        assert "capital" in done["transcript"].lower()
        assert np.all([e["type"] != "conversation.item.input_audio_transcription.failed" for e in rt.events])


async def test_an_open_microphone_in_a_quiet_room_never_fills_the_buffer(stack: Stack):
    """With server VAD, silence is not kept, so only speech counts against the 30 s limit."""
    async with realtime(stack.ws) as rt:
        await stream_audio(rt, silence(35), pace=0)
        await stream_audio(rt, silence(0.3) + speak(QUESTION) + silence(1.5), pace=0)
        done = (await rt.until("conversation.item.input_audio_transcription.completed"))[-1]
        assert "capital" in done["transcript"].lower()
        assert not [e for e in rt.events if e["type"] == "error"], rt.events
        await rt.until("response.done")
