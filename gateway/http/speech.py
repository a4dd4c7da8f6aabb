"""`POST /v1/audio/speech`, OpenAI-compatible: text to speech, streamed as it is made.

The input is cut into pieces as a reply would be (`gateway.speech`), each spoken by a speech
worker; the body streams in the `response_format` asked for, or as server-sent `speech.audio.delta`
events with `stream_format: "sse"`. The first piece is awaited before the answer starts, so a
missing speech worker is a 503 and not an empty 200; a client that goes away cancels the rest.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.http.errors import documented, error_response
from gateway.services import Services
from gateway.speech.containers import MEDIA_TYPES, PCM_RATE, SpeechEncoder, SpeechFormat, rate_for
from gateway.speech.stream import SpeechStream, audio_tokens, check_voice
from shared.config import Settings
from shared.errors import ErrorInfo, InvalidRequest, NotFound, job_error
from shared.messages import AudioChunk, Priority

router = APIRouter(responses=documented(401, 429))


class SpeechBody(BaseModel):
    """OpenAI's speech request; `instructions` (a style prompt) is accepted and not used."""

    model_config = ConfigDict(extra="ignore")

    model: str
    input: str = Field(min_length=1)
    voice: str = Field(min_length=1, max_length=64)
    response_format: SpeechFormat = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, max_length=4096)
    stream_format: Literal["audio", "sse"] = "audio"


def check_speech(body: SpeechBody, settings: Settings) -> None:
    """Refuse what cannot be spoken here, with the param at fault (also for batch lines)."""
    if not settings.accepts_speech_model(body.model):
        raise NotFound(f"Model {body.model!r} is not served here.", param="model")
    check_voice(settings, body.voice, "voice")
    if len(body.input) > settings.max_speech_input_chars:
        raise InvalidRequest(f"'input' is longer than {settings.max_speech_input_chars} characters.", param="input")


def speak(services: Services, body: SpeechBody, owner: str, priority: Priority = "interactive") -> SpeechStream:
    """Start speaking the whole input; its audio comes from `chunks()`."""
    settings = services.settings
    stream = SpeechStream(
        services.speech,
        owner,
        encoding="pcm16",
        rate=rate_for(body.response_format) if body.stream_format == "audio" else PCM_RATE,
        speed=body.speed,
        ahead=settings.speech_pieces_ahead,
        priority=priority,
    )
    stream.add(body.input)
    stream.finish()
    return stream


@router.post(
    "/v1/audio/speech",
    response_model=None,
    responses={
        200: {
            "description": "The speech in `response_format`, streamed; or `speech.audio.delta` events.",
            "content": {**{t: {} for t in MEDIA_TYPES.values()}, "text/event-stream": {}},
        },
        **documented(400, 404, 503),
    },
)
async def create_speech(request: Request, body: SpeechBody) -> Response:
    services: Services = request.app.state.services
    check_speech(body, services.settings)
    stream = speak(services, body, "http")
    chunks = aiter(stream.chunks())
    first = await _first(chunks, stream)
    if (failure := failure_of(stream)) is not None:
        await stream.stop()
        return error_response(failure)
    if body.stream_format == "sse":
        return StreamingResponse(_sse(first, chunks, stream), media_type="text/event-stream")
    return StreamingResponse(
        _audio(first, chunks, stream, body.response_format), media_type=MEDIA_TYPES[body.response_format]
    )


async def _first(chunks: AsyncIterator[AudioChunk], stream: SpeechStream) -> AudioChunk | None:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None
    except BaseException:
        await stream.stop()
        raise


def failure_of(stream: SpeechStream) -> ErrorInfo | None:
    """Why the speech could not be made, as an HTTP error; None when it was."""
    final = stream.failure
    return None if final is None else job_error(final.error_code, final.error_message, "Speech failed.")


async def _pcm(first: AudioChunk | None, chunks: AsyncIterator[AudioChunk]) -> AsyncIterator[bytes]:
    if first is not None:
        yield base64.b64decode(first.audio)
    async for chunk in chunks:
        yield base64.b64decode(chunk.audio)


async def _audio(
    first: AudioChunk | None, chunks: AsyncIterator[AudioChunk], stream: SpeechStream, fmt: SpeechFormat
) -> AsyncIterator[bytes]:
    encoder = SpeechEncoder(fmt)
    try:
        async for pcm in _pcm(first, chunks):
            if data := encoder.feed(pcm):
                yield data
        yield encoder.close()
    finally:
        await stream.stop()


async def _sse(first: AudioChunk | None, chunks: AsyncIterator[AudioChunk], stream: SpeechStream) -> AsyncIterator[str]:
    """OpenAI's speech events: base64 PCM16 24 kHz deltas, then `speech.audio.done` with usage."""
    samples = 0
    try:
        async for pcm in _pcm(first, chunks):
            samples += len(pcm) // 2
            yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(pcm).decode()})
        tokens = audio_tokens(samples * 1000 // PCM_RATE)
        yield _event(
            {"type": "speech.audio.done", "usage": {"input_tokens": 0, "output_tokens": tokens, "total_tokens": tokens}}
        )
    finally:
        await stream.stop()


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"
