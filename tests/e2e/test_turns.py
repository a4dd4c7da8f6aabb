"""Turn-taking through the running service, with real speech: semantic VAD, and server VAD's idle timeout."""

from __future__ import annotations

import time

from tests.helpers import Realtime, Stack, realtime, stream_audio, user_message
from tests.speech import silence, speak


async def _turns(rt: Realtime, turn_detection: dict, pcm: bytes, last: str = "capital") -> list[str]:
    """The transcripts of the turns the service cut `pcm` into, up to the one with the word `last`."""
    await rt.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": turn_detection}}}})
    await rt.until("session.updated")
    await stream_audio(rt, pcm, pace=0)
    transcripts: list[str] = []
    while True:  # the last words are in the last turn
        event = await rt.next(timeout=30)
        if event["type"] == "conversation.item.input_audio_transcription.completed":
            transcripts.append(event["transcript"].lower())
            if last in transcripts[-1]:
                return transcripts


async def test_semantic_vad_waits_for_a_speaker_who_pauses_midway(stack: Stack):
    # Smart Turn hears this espeak phrase as unfinished (p < 0.05 after 200 ms of silence): server VAD
    # cuts at the pause, semantic VAD waits for the rest of the sentence.
    pcm = silence(0.3) + speak("So what I want to ask is") + silence(1.0) + speak("what is the capital of France?")
    pcm += silence(2.5)
    async with realtime(stack.ws) as rt:
        server = await _turns(rt, {"type": "server_vad", "create_response": False}, pcm)
        assert len(server) == 2 and "capital" not in server[0], server
    async with realtime(stack.ws) as rt:
        semantic = await _turns(rt, {"type": "semantic_vad", "eagerness": "high", "create_response": False}, pcm)
        assert len(semantic) == 1 and "ask" in semantic[0] and "capital" in semantic[0], semantic
        session = (await _session(rt))["audio"]["input"]["turn_detection"]
        assert session == {
            "type": "semantic_vad",
            "eagerness": "high",
            "create_response": False,
            "interrupt_response": True,
        }


async def test_semantic_vad_waits_where_the_words_are_not_yet_a_sentence(stack: Stack):
    # Smart Turn hears espeak's "What is the capital" as a finished turn (p > 0.5 after 200 ms of
    # silence); the sentence-end model reads the words as unfinished, so the turn waits for the rest.
    pcm = silence(0.3) + speak("What is the capital") + silence(1.0) + speak("of France?") + silence(2.5)
    async with realtime(stack.ws) as rt:
        turn = {"type": "semantic_vad", "eagerness": "high", "create_response": False}
        semantic = await _turns(rt, turn, pcm, last="capital")
        # One turn, with the rest in it (whisper-tiny.en hears espeak's "of France" variously).
        assert len(semantic) == 1 and semantic[0].split("capital", 1)[1].strip(" ?.,"), semantic


async def _session(rt: Realtime) -> dict:
    await rt.send({"type": "session.update", "session": {}})
    return (await rt.until("session.updated"))[-1]["session"]


async def test_idle_timeout_prompts_a_silent_user(stack: Stack):
    async with realtime(stack.ws) as rt:
        vad = {"type": "server_vad", "idle_timeout_ms": 5000}
        await rt.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": vad}}}})
        await rt.until("session.updated")
        await rt.send(user_message("Hello! Answer in a few words."))
        await rt.send({"type": "response.create"})
        await rt.until("response.done")
        ended = time.monotonic()
        events = await rt.until("input_audio_buffer.timeout_triggered", timeout=15)
        waited = time.monotonic() - ended
        assert 4.8 < waited < 8, waited
        assert "item_id" in events[-1] and events[-1]["audio_end_ms"] >= events[-1]["audio_start_ms"]
        done = (await rt.until("response.done", timeout=60))[-1]["response"]
        assert done["status"] in ("completed", "incomplete")  # the model speaks up
