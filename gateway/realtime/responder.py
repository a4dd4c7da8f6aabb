"""One response, from `response.created` to `response.done`, as Realtime server events.

The assistant item is added to the conversation when the response starts (so it keeps its place)
and rewritten with its text when the response ends, whatever the ending: a cancelled or cut-off
reply stays in the conversation as far as it got, as in the Realtime API.

A spoken response (`output_modalities: ["audio"]`) sends its text as the audio's transcript and
hands it to a `SpeechStream` as it comes; a second task forwards the audio while tokens still
arrive. `stop` (a cancel or a barge-in, set by the runner) silences it at once: no audio delta is
sent after it, whatever the workers still had in flight, and the pieces not yet spoken are
cancelled. A truncation the client sent meanwhile (`Spoken.truncated_ms`) holds for the item the
response ends with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypedDict

from redis.exceptions import RedisError

from gateway.realtime.function_calls import CallRelay
from gateway.speech.stream import SpeechStream, Spoken, audio_tokens
from gateway.tools.calls import Text, ToolCallReader
from shared.clients import DecoderClient
from shared.errors import REDIS_LOST
from shared.messages import (
    AudioPart,
    ConversationItemAdded,
    ConversationItemDone,
    GenerateRequest,
    MessageItem,
    OutputAudio,
    OutputText,
    Response,
    ResponseContentPartAdded,
    ResponseContentPartDone,
    ResponseDone,
    ResponseFinal,
    ResponseOutputAudioDelta,
    ResponseOutputAudioDone,
    ResponseOutputAudioTranscriptDelta,
    ResponseOutputAudioTranscriptDone,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
    ServerEvent,
    StatusDetails,
    StatusError,
    TextPart,
    TokenDelta,
    Usage,
    new_id,
)
from shared.metrics import TIME_TO_FIRST_AUDIO, TIME_TO_FIRST_TOKEN
from shared.sessions import SessionStore

log = logging.getLogger(__name__)

Send = Callable[[ServerEvent], Awaitable[None]]


class _PartRef(TypedDict):
    response_id: str
    item_id: str
    output_index: int
    content_index: int


@dataclass
class Stop:
    """Why a running response was stopped (a cancel or a barge-in), set by the runner; and whether its
    audio is held back meanwhile (speech over it that may be only a backchannel, `barge_in.py`)."""

    event: asyncio.Event
    playing: asyncio.Event
    reason: str = "client_cancelled"

    @classmethod
    def new(cls) -> Stop:
        playing = asyncio.Event()
        playing.set()
        return cls(asyncio.Event(), playing)

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


async def stream_response(
    response: Response,
    request: GenerateRequest,
    *,
    decoder: DecoderClient,
    sessions: SessionStore,
    send: Send,
    in_conversation: bool,
    speech: SpeechStream | None = None,
    stop: Stop | None = None,
    on_item: Callable[[str, Spoken], None] | None = None,
) -> Response:
    """Run a response whose `response.created` is sent; send every later event, return the final state.

    With `speech` the reply is spoken; `on_item` learns the item's id and what it says aloud.
    """
    rid, sid = response.id, request.session_id
    stop = stop or Stop.new()
    item = MessageItem(id=new_id("item"), role="assistant", status="in_progress")
    previous = await sessions.add_item(sid, item, None) if in_conversation else None
    await send(ResponseOutputItemAdded(response_id=rid, output_index=0, item=item))
    if in_conversation:
        await send(ConversationItemAdded(previous_item_id=previous, item=item))
    where = _PartRef(response_id=rid, item_id=item.id, output_index=0, content_index=0)
    await send(ResponseContentPartAdded(**where, part=AudioPart() if speech else TextPart()))
    if speech is not None and on_item is not None:
        on_item(item.id, speech.spoken)
    audio = asyncio.create_task(_forward_audio(speech, send, where, stop)) if speech else None

    final: ResponseFinal | None = None
    calls = CallRelay(send, sessions, sid, rid, in_conversation=in_conversation)
    try:
        text, final = await _relay_tokens(
            decoder, request, send=send, where=where, speech=speech, stop=stop, calls=calls
        )
    finally:
        if speech is not None and audio is not None:  # also when this task is cancelled: silence it
            final = await _end_speech(speech, audio, final, stop)
    content = await _close_part(send, where, text, speech)
    item = item.model_copy(
        update={"status": "completed" if final.status == "completed" else "incomplete", "content": content}
    )
    await send(ResponseOutputItemDone(response_id=rid, output_index=0, item=item))
    if in_conversation:
        with contextlib.suppress(RedisError):  # still down: the item stays as the decoder left it
            await sessions.replace_item(sid, item)
        await send(ConversationItemDone(previous_item_id=previous, item=item))
    done = response.model_copy(
        update={
            "status": final.status,
            "status_details": _status_details(final),
            "output": [item, *calls.items],
            "usage": _usage(final, speech.spoken.played_ms if speech else 0),
        }
    )
    await send(ResponseDone(response=done))
    return done


async def _relay_tokens(
    decoder: DecoderClient,
    request: GenerateRequest,
    *,
    send: Send,
    where: _PartRef,
    speech: SpeechStream | None,
    stop: Stop,
    calls: CallRelay,
) -> tuple[str, ResponseFinal]:
    """Forward the reply's text (as the audio's transcript when spoken) and its tool calls (to `calls`);
    its text and final event."""
    pieces: list[str] = []
    final = ResponseFinal(status="failed", error_code="server_error", error_message="No final event.")
    started = time.perf_counter()
    reader = ToolCallReader() if request.offered_tools() else None

    async def say(text: str) -> None:
        if not pieces:
            TIME_TO_FIRST_TOKEN.labels("realtime").observe(time.perf_counter() - started)
        pieces.append(text)
        if speech is None:
            await send(ResponseOutputTextDelta(**where, delta=text))
        elif not stop.event.is_set():
            await send(ResponseOutputAudioTranscriptDelta(**where, delta=text))
            speech.add(text)

    try:
        async for event in decoder.generate(request):
            if isinstance(event, ResponseFinal):
                final = event
            elif isinstance(event, TokenDelta) and event.text:
                for said in reader.push(event.text) if reader is not None else [Text(event.text)]:
                    await (say(said.text) if isinstance(said, Text) else calls.on(said))
        for said in reader.finish() if reader is not None else []:
            await (say(said.text) if isinstance(said, Text) else calls.on(said, complete=final.status == "completed"))
    except RedisError:
        # The reply travels through Redis: without it this one ends here, and the client hears why
        # (with the code the HTTP API gives the same failure).
        log.warning("response %s: lost Redis mid-reply", request.response_id, exc_info=True)
        final = ResponseFinal(status="failed", error_code="redis_unavailable", error_message=REDIS_LOST)
    return "".join(pieces), final


async def _close_part(
    send: Send, where: _PartRef, text: str, speech: SpeechStream | None
) -> list[OutputText | OutputAudio]:
    """The part's closing events; the item's content (a truncated reply keeps what was heard)."""
    if speech is None:
        await send(ResponseOutputTextDone(**where, text=text))
        await send(ResponseContentPartDone(**where, part=TextPart(text=text)))
        return [OutputText(type="output_text", text=text)]
    await send(ResponseOutputAudioDone(**where))
    await send(ResponseOutputAudioTranscriptDone(**where, transcript=text))
    await send(ResponseContentPartDone(**where, part=AudioPart(transcript=text)))
    spoken = speech.spoken
    kept = text if spoken.truncated_ms is None else spoken.heard(spoken.truncated_ms)
    return [OutputAudio(type="output_audio", transcript=kept)]


async def _forward_audio(speech: SpeechStream, send: Send, where: _PartRef, stop: Stop) -> None:
    """Send the reply's audio as it is made, until it ends or `stop` is set (then at once)."""
    stopped = asyncio.create_task(stop.event.wait())
    chunks = aiter(speech.chunks())
    started, first = time.perf_counter(), True
    try:
        while True:
            following = asyncio.ensure_future(anext(chunks))
            await asyncio.wait({following, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stop.event.is_set():
                following.cancel()
                await speech.stop()
                return
            try:
                chunk = following.result()
            except StopAsyncIteration:
                return
            if not stop.playing.is_set():  # held: send it once released, or nothing once stopped
                resumed = asyncio.create_task(stop.playing.wait())
                await asyncio.wait({resumed, stopped}, return_when=asyncio.FIRST_COMPLETED)
                resumed.cancel()
                if stop.event.is_set():
                    await speech.stop()
                    return
            if first:
                TIME_TO_FIRST_AUDIO.labels("realtime").observe(time.perf_counter() - started)
                first = False
            await send(ResponseOutputAudioDelta(**where, delta=chunk.audio))
    finally:
        stopped.cancel()


async def _end_speech(
    speech: SpeechStream, audio: asyncio.Task[None], final: ResponseFinal | None, stop: Stop
) -> ResponseFinal:
    """Let the last pieces play out (or stop them), and say how the response ended."""
    if final is None:  # the text relay failed: its exception goes on once the speech is stopped
        final = ResponseFinal(status="failed", error_code="server_error")
    if final.status == "completed" and not stop.event.is_set():
        speech.finish()
    else:
        await speech.stop()
    try:
        await audio
    finally:
        await speech.stop()  # whatever ended the wait: nothing is left speaking
    if stop.event.is_set():
        return final.model_copy(update={"status": "cancelled", "reason": stop.reason})
    if speech.failure is not None and final.status == "completed":
        return speech.failure.model_copy(update={"usage": final.usage})
    return final


def _status_details(final: ResponseFinal) -> StatusDetails | None:
    if final.status == "completed":
        return None
    error = None
    if final.status == "failed":
        error = StatusError(
            type="server_error",
            code=final.error_code or "server_error",
            message=final.error_message or "The response failed.",
        )
    return StatusDetails(type=final.status, reason=final.reason, error=error)


def _usage(final: ResponseFinal, audio_ms: int) -> Usage:
    u = final.usage
    spoken = audio_tokens(audio_ms)
    output = u.output_tokens + spoken
    usage = Usage(input_tokens=u.input_tokens, output_tokens=output, total_tokens=u.input_tokens + output)
    usage.input_token_details.text_tokens = u.input_tokens
    usage.input_token_details.cached_tokens = u.cached_tokens
    usage.output_token_details.text_tokens = u.output_tokens
    usage.output_token_details.audio_tokens = spoken
    return usage
