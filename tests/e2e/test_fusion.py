"""Fusion through the whole service: pictures as soft tokens, and pictures with speech in one message."""

import base64
import time

import pytest

from tests.helpers import Stack, realtime
from tests.pictures import data_url, picture
from tests.speech import speak

INSTRUCTIONS = "You are a helpful assistant. The user's pictures and speech are in their message. Answer briefly."


async def _session(rt, fusion: str) -> dict:
    session = {"type": "realtime", "instructions": INSTRUCTIONS, "fusion": fusion}
    await rt.send({"type": "session.update", "session": session})
    return (await rt.until("session.updated"))[-1]["session"]


def _message(*parts: dict) -> dict:
    return {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": list(parts)}}


def _picture(shape: str, colour: str, **kw) -> dict:
    return {"type": "input_image", "image_url": data_url(picture(shape, colour, **kw))}


@pytest.mark.parametrize(("shape", "colour"), [("circle", "red"), ("star", "yellow"), ("cross", "blue")])
async def test_soft_tokens_alone_answer_picture_questions(stack: Stack, shape: str, colour: str):
    answers = []
    for question in ("What colour is the shape in the picture?", "What shape is in the picture?"):
        async with realtime(stack.ws) as rt:  # a fresh conversation per question, as `mmstream eval` asks
            assert (await _session(rt, "embed"))["fusion"] == "embed"
            text = {"type": "input_text", "text": f"{question} Answer with one word."}
            await rt.send(_message(_picture(shape, colour), text))
            answers.append((await rt.ask_response())[0].lower())
    assert colour in answers[0] and shape in answers[1], answers


async def test_picture_and_spoken_question_in_one_message(stack: Stack):
    speech = base64.b64encode(speak("What colour is the shape in this picture?")).decode()
    async with realtime(stack.ws) as rt:
        await _session(rt, "both")
        await rt.send(
            _message(
                _picture("star", "green"),
                {"type": "input_audio", "audio": speech},
                {"type": "input_text", "text": "Answer with one word."},
            )
        )
        started = time.monotonic()
        reply, done = await rt.ask_response()
        took = time.monotonic() - started
        heard = [e for e in rt.events if e["type"] == "conversation.item.input_audio_transcription.completed"]
    assert done["response"]["status"] == "completed"
    assert heard and "colour" in heard[-1]["transcript"].lower().replace("color", "colour")
    assert "green" in reply.lower(), reply
    assert took < 15, "the decoder waited for a transcript that never came"


async def test_an_unknown_fusion_mode_is_refused_and_the_session_goes_on(stack: Stack):
    async with realtime(stack.ws) as rt:
        await rt.send({"type": "session.update", "session": {"type": "realtime", "fusion": "telepathy"}})
        error = (await rt.until("error"))[-1]["error"]
        assert error["type"] == "invalid_request_error" and "fusion" in (error.get("param") or error["message"])
        assert (await _session(rt, "text"))["fusion"] == "text"


async def test_speech_as_soft_tokens_alone_is_understood(stack: Stack):
    # Whisper tiny.en's own decoder hears espeak-ng's "pink" as another word; the projector does not.
    speech = base64.b64encode(speak("My favourite colour is pink.")).decode()
    async with realtime(stack.ws) as rt:
        await _session(rt, "embed")
        text = {"type": "input_text", "text": "What is my favourite colour? Answer with one word."}
        await rt.send(_message({"type": "input_audio", "audio": speech}, text))
        reply, done = await rt.ask_response()
    assert done["response"]["status"] == "completed"
    assert "pink" in reply.lower(), reply
