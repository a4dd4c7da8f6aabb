"""One chat completion, for the HTTP route and for batch lines alike.

A request becomes a short-lived conversation in Redis: its messages are items (pictures go to the
image workers, speech to the audio workers, as over the websocket), and the decoder answers it
through the same queue and response stream. `Completion` relays the reply, cuts it at a stop
sequence (`stops.StopFilter`) and shapes it as OpenAI does: one object, or `chat.completion.chunk`
server-sent events. With `modalities: ["text", "audio"]` the reply is spoken as it streams
(`gateway.speech`): `message.audio` holds the whole file and its transcript, or streamed chunks carry
`delta.audio` transcript and PCM16 data as they come.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from gateway.http.chat_schema import (
    AudioOutputParams,
    AudioPart,
    ChatCompletionRequest,
    ChatMessage,
    ImagePart,
    NamedToolChoice,
    TextPart,
)
from gateway.http.errors import error_body
from gateway.http.stops import StopFilter
from gateway.image_urls import image_bytes
from gateway.services import Services
from gateway.speech.containers import SpeechFormat, rate_for, whole_file
from gateway.speech.stream import SpeechStream, audio_tokens, check_voice
from gateway.tools.calls import CallArguments, CallDone, CallStarted, Event, Text, ToolCallReader
from gateway.tools.check import check_tools
from shared.errors import REDIS_LOST, ErrorInfo, InvalidRequest, NotFound, TooLarge, job_error
from shared.messages import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    GenerateRequest,
    InputAudio,
    InputImage,
    InputText,
    Item,
    MessageItem,
    OutputFormat,
    OutputText,
    Priority,
    ResponseFinal,
    TokenDelta,
    ToolChoice,
    new_id,
)
from shared.metrics import TIME_TO_FIRST_TOKEN

log = logging.getLogger(__name__)

_cleanups: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class Ids:
    """Where a completion lives in Redis: its conversation and its response."""

    session_id: str
    response_id: str

    @classmethod
    def new(cls) -> Ids:
        return cls(new_id("chat"), new_id("chatcmpl"))


def check(services: Services, body: ChatCompletionRequest) -> StopFilter:
    """Refuse what the service cannot answer before anything is stored."""
    s = services.settings
    if not s.accepts_model(body.model):
        raise NotFound(
            f"The model '{body.model}' does not exist; use '{s.served_model_name}'.",
            code="model_not_found",
            param="model",
        )
    if body.speaks():
        if body.audio is None:
            raise InvalidRequest(
                "'audio' (voice and format) is required when modalities include audio.",
                code="missing_required_parameter",
                param="audio",
            )
        check_voice(s, body.audio.voice, "audio.voice")
        if body.stream and body.audio.format != "pcm16":
            raise InvalidRequest("Streamed audio comes as pcm16 only.", param="audio.format")
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is None:
        raise InvalidRequest(
            "A json_schema response_format needs 'json_schema'.",
            code="missing_required_parameter",
            param="response_format.json_schema",
        )
    check_tools(_tools(body), _tool_choice(body), max_chars=s.max_tools_chars, param="tools")
    return StopFilter(body.stops())


def _tools(body: ChatCompletionRequest) -> list[FunctionTool]:
    return [
        FunctionTool(name=t.function.name, description=t.function.description, parameters=t.function.parameters or {})
        for t in body.tools or []
    ]


def _tool_choice(body: ChatCompletionRequest) -> ToolChoice:
    choice = body.tool_choice
    if isinstance(choice, NamedToolChoice):
        return choice.function.name
    return choice or "auto"


def _output_format(body: ChatCompletionRequest) -> OutputFormat | None:
    fmt = body.response_format
    if fmt is None or fmt.type == "text":
        return None
    schema = fmt.json_schema.schema_ if fmt.json_schema is not None else None
    return OutputFormat(type=fmt.type, json_schema=schema)


async def start(
    services: Services,
    body: ChatCompletionRequest,
    ids: Ids,
    *,
    priority: Priority = "interactive",
    require_media: bool = False,
    stored: bool = False,
    detached: bool = False,
) -> Completion:
    """Store the messages (unless `stored`: an earlier gateway did) and describe the response to make.

    A `detached` completion (a batch line) is left running when its reader stops early: the gateway
    that takes the batch over follows it.
    """
    stops = check(services, body)
    if stored:
        instructions = _instructions(body.messages)
        item_ids = await services.sessions.item_ids(ids.session_id)
    else:
        instructions, item_ids = await _store_messages(services, ids.session_id, body.messages, priority)
    s = services.settings
    limit = body.max_completion_tokens or body.max_tokens or s.max_output_tokens_cap
    request = GenerateRequest(
        response_id=ids.response_id,
        session_id=ids.session_id,
        item_ids=item_ids,
        instructions=instructions if instructions is not None else s.default_instructions,
        temperature=body.temperature if body.temperature is not None else s.default_temperature,
        top_p=body.top_p if body.top_p is not None else s.default_top_p,
        max_output_tokens=min(limit, s.max_output_tokens_cap),
        seed=body.seed,
        fusion=s.fusion_mode,
        priority=priority,
        require_media=require_media,
        output_format=_output_format(body),
        tools=_tools(body),
        tool_choice=_tool_choice(body),
        parallel_tool_calls=body.parallel_tool_calls,
    )
    voice = body.audio if body.speaks() else None
    return Completion(services, request, body.model, stops, attach=stored, detached=detached, voice=voice)


def _instructions(messages: list[ChatMessage]) -> str | None:
    texts = [_plain_text(m, n) for n, m in enumerate(messages) if m.role in ("system", "developer")]
    return "\n\n".join(texts) if texts else None


async def _store_messages(
    services: Services, session_id: str, messages: list[ChatMessage], priority: Priority
) -> tuple[str | None, list[str]]:
    """System and developer messages become the instructions; the others, items of the conversation
    (an assistant's tool calls and the tools' answers, items of their own)."""
    item_ids: list[str] = []
    calls: set[str] = set()  # ids of the calls made so far: a tool message answers one of them
    for n, message in enumerate(messages):
        if message.role in ("system", "developer"):
            continue
        call_items = _call_items(message, n, calls)  # stored after the message's own text
        if message.role == "tool" or message.content is None:
            await _add_items(services, session_id, call_items, item_ids)
            continue
        item, media = await _message_item(services, message, n)
        await _add_items(services, session_id, [item, *call_items], item_ids)
        for index, data, kind in media:
            if kind == "image":
                await services.images.describe(session_id, item.id, index, data, frame=False, priority=priority)
            else:
                await services.audio.transcribe_item(session_id, item.id, data, encoding="file", priority=priority)
    return _instructions(messages), item_ids


async def _message_item(
    services: Services, message: ChatMessage, n: int
) -> tuple[MessageItem, list[tuple[int, bytes, str]]]:
    """A message's item, and its media to describe: (content index, data, "image" or "audio")."""
    item = MessageItem(id=new_id("item"), role=message.role, content=[])
    media: list[tuple[int, bytes, str]] = []  # (content index, data, kind)
    parts = [TextPart(type="text", text=message.content)] if isinstance(message.content, str) else message.content
    for part in parts or []:
        index = len(item.content)
        if isinstance(part, TextPart):
            _check_text(part.text, services, f"messages[{n}].content")
            text = OutputText(type="output_text", text=part.text) if message.role == "assistant" else None
            item.content.append(text or InputText(type="input_text", text=part.text))
        elif message.role == "assistant":
            raise InvalidRequest("Assistant messages hold text only.", param=f"messages[{n}].content")
        elif isinstance(part, ImagePart):
            data = await image_bytes(part.image_url.url, services.settings)
            item.content.append(InputImage(type="input_image", detail=part.image_url.detail))
            media.append((index, data, "image"))
        else:
            if any(kind == "audio" for _, _, kind in media):
                raise InvalidRequest("A message holds at most one audio part.", param=f"messages[{n}].content")
            item.content.append(InputAudio(type="input_audio"))
            media.append((index, _audio_bytes(part, services, n), "audio"))
    if not item.content:
        raise InvalidRequest("A message needs some content.", param=f"messages[{n}].content")
    return item, media


async def _add_items(services: Services, session_id: str, items: list[Item], item_ids: list[str]) -> None:
    for item in items:
        await services.sessions.add_item(session_id, item, None)
        item_ids.append(item.id)


def _call_items(message: ChatMessage, n: int, calls: set[str]) -> list[Item]:
    """The items of an assistant's tool calls, or of a tool's answer (which must follow its call)."""
    if message.role == "tool":
        if message.tool_call_id is None:
            raise InvalidRequest(
                "A tool message needs the 'tool_call_id' it answers.",
                code="missing_required_parameter",
                param=f"messages[{n}].tool_call_id",
            )
        if message.tool_call_id not in calls:
            raise InvalidRequest(
                f"No earlier assistant message made the tool call '{message.tool_call_id}'.",
                param=f"messages[{n}].tool_call_id",
            )
        return [FunctionCallOutputItem(call_id=message.tool_call_id, output=_plain_text(message, n))]
    if message.tool_calls and message.role != "assistant":
        raise InvalidRequest("Only assistant messages make tool calls.", param=f"messages[{n}].tool_calls")
    if message.content is None and not message.tool_calls:
        raise InvalidRequest("A message needs some content.", param=f"messages[{n}].content")
    calls.update(c.id for c in message.tool_calls or [])
    return [
        FunctionCallItem(call_id=c.id, name=c.function.name, arguments=c.function.arguments)
        for c in message.tool_calls or []
    ]


def _plain_text(message: ChatMessage, n: int) -> str:
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    if message.content and all(isinstance(p, TextPart) for p in message.content):
        return "".join(p.text for p in message.content if isinstance(p, TextPart))
    raise InvalidRequest(f"{message.role} messages hold text only.", param=f"messages[{n}].content")


def _check_text(text: str, services: Services, param: str) -> None:
    if len(text) > services.settings.max_text_chars:
        raise InvalidRequest(f"Text longer than {services.settings.max_text_chars} characters.", param=param)


def _audio_bytes(part: AudioPart, services: Services, n: int) -> bytes:
    limit = services.settings.max_upload_bytes
    param = f"messages[{n}].content.input_audio.data"
    if len(part.input_audio.data) > limit * 4 // 3 + 4:
        raise TooLarge(f"Audio larger than {limit} bytes.", param=param)
    try:
        return base64.b64decode(part.input_audio.data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("'input_audio.data' is not valid base64.", code="invalid_audio", param=param) from exc


class Completion:
    """One answer: relays the decoder's stream, cuts it at a stop sequence, shapes it as OpenAI does."""

    def __init__(
        self,
        services: Services,
        request: GenerateRequest,
        model: str,
        stops: StopFilter,
        *,
        attach: bool = False,
        detached: bool = False,
        voice: AudioOutputParams | None = None,
    ) -> None:
        self._services = services
        self._voice = voice
        self._speech_failure: ResponseFinal | None = None
        self._audio_ms = 0
        self._request = request
        self._model = model
        self._stops = stops
        self._attach = attach
        self._detached = detached
        self._created = int(time.time())
        self._final: ResponseFinal | None = None
        self._media: list[dict[str, Any]] = []
        # Tool calls are read out of the reply only when the model was offered tools.
        self._calls = ToolCallReader() if request.offered_tools() else None

    @property
    def final(self) -> ResponseFinal | None:
        return self._final

    async def _text(self, *, read_media: bool = False) -> AsyncIterator[str]:
        """The reply's text as it comes; sets `_final`. Cancels the generation at a stop sequence."""
        rid = self._request.response_id
        try:
            events = self._services.decoder.generate(self._request, attach=self._attach, detached=self._detached)
            started, first = time.perf_counter(), True
            async for event in events:
                if isinstance(event, TokenDelta) and not self._stops.stopped:
                    if text := self._stops.push(event.text):
                        if first and self._request.priority == "interactive":
                            TIME_TO_FIRST_TOKEN.labels("http").observe(time.perf_counter() - started)
                        first = False
                        yield text
                    if self._stops.stopped:
                        await self._services.decoder.cancel(rid, "stop_sequence")
                elif isinstance(event, ResponseFinal):
                    self._final = event
            if tail := self._stops.flush():
                yield tail
            if read_media:
                self._media = await self._read_media()
        except RedisError:
            log.warning("response %s: lost Redis mid-reply", rid, exc_info=True)
            self._final = ResponseFinal(status="failed", error_code="redis_unavailable", error_message=REDIS_LOST)
        finally:
            if self._final is not None or not self._detached:
                # In a task of its own: when the client went away, this generator is being cancelled.
                task = asyncio.get_running_loop().create_task(self._clean_up(cancel=self._final is None))
                _cleanups.add(task)
                task.add_done_callback(_cleanups.discard)

    async def _events(self, *, read_media: bool = False) -> AsyncIterator[Event]:
        """The reply as text and tool calls, as they come."""
        reader = self._calls
        async for text in self._text(read_media=read_media):
            if reader is None:
                yield Text(text)
            else:
                for event in reader.push(text):
                    yield event
        for event in reader.finish() if reader is not None else []:
            yield event

    async def _spoken(self, *, read_media: bool = False) -> AsyncIterator[Event | _Audio]:
        """The reply's text and calls (`_events`) and its audio (base64 PCM16) as they come, merged;
        only the text is spoken."""
        assert self._voice is not None
        speech = SpeechStream(
            self._services.speech,
            self._request.session_id,
            encoding="pcm16",
            rate=rate_for(_speech_format(self._voice)),
            speed=1.0,
            ahead=self._services.settings.speech_pieces_ahead,
            priority=self._request.priority,
        )
        out: asyncio.Queue[Event | _Audio | None] = asyncio.Queue()

        async def text() -> None:
            try:
                async for event in self._events(read_media=read_media):
                    if isinstance(event, Text):
                        speech.add(event.text)
                    out.put_nowait(event)
                if self._stops.stopped or (self._final is not None and self._final.status == "completed"):
                    speech.finish()
                else:
                    await speech.stop()
            finally:
                out.put_nowait(None)

        async def audio() -> None:
            try:
                async for chunk in speech.chunks():
                    out.put_nowait(_Audio(chunk.audio))
            finally:
                out.put_nowait(None)

        tasks = [asyncio.create_task(text()), asyncio.create_task(audio())]
        try:
            ended = 0
            while ended < len(tasks):
                if (entry := await out.get()) is None:
                    ended += 1
                else:
                    yield entry
            for task in tasks:
                task.result()  # a failure in either is this one's
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await speech.stop()
            self._speech_failure = speech.failure
            self._audio_ms = speech.spoken.played_ms

    async def _read_media(self) -> list[dict[str, Any]]:
        """What the workers made of the request's pictures and speech (descriptions, transcripts)."""
        media: list[dict[str, Any]] = []
        for item_id in self._request.item_ids:
            try:
                item = await self._services.sessions.get_item(self._request.session_id, item_id)
            except InvalidRequest:
                continue
            for index, part in enumerate(item.content if isinstance(item, MessageItem) else []):
                if isinstance(part, InputImage):
                    media.append({"item": item_id, "index": index, "type": "image", "description": part.description})
                elif isinstance(part, InputAudio):
                    media.append({"item": item_id, "index": index, "type": "audio", "transcript": part.transcript})
        return media

    async def _clean_up(self, *, cancel: bool) -> None:
        if cancel:  # the client went away mid-stream: stop the work
            await self._services.decoder.cancel(self._request.response_id, "client_disconnected")
        await self._services.sessions.forget(self._request.session_id)

    def _finish_reason(self) -> str:
        final = self._final
        if final is not None and final.status == "incomplete" and not self._stops.stopped:
            return "length"
        return "tool_calls" if self._calls is not None and self._calls.calls else "stop"

    def _usage(self) -> dict[str, Any]:
        u = self._final.usage if self._final is not None else None
        prompt, completion, cached = (u.input_tokens, u.output_tokens, u.cached_tokens) if u else (0, 0, 0)
        spoken = audio_tokens(self._audio_ms)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion + spoken,
            "total_tokens": prompt + completion + spoken,
            "prompt_tokens_details": {"cached_tokens": cached},
        }
        if self._voice is not None:
            usage["completion_tokens_details"] = {"text_tokens": completion, "audio_tokens": spoken}
        return usage

    def failure(self) -> ErrorInfo | None:
        """Why the response failed, as an HTTP error; None when it produced an answer."""
        final = self._final
        if self._speech_failure is not None and (final is None or final.status != "failed"):
            final = self._speech_failure
        if final is None or final.status != "failed" or (self._stops.stopped and final is self._final):
            return None
        # The same code the websocket reports.
        return job_error(final.error_code, final.error_message, "The decoder failed.", final.error_param)

    async def whole(self) -> tuple[int, dict[str, Any]]:
        """The whole answer as (HTTP status, body): a `chat.completion` object or an error object.

        `input_media` (an mmstream extension) says what the workers saw and heard in the request.
        """
        audio: list[bytes] = []
        pieces: list[str] = []
        calls: list[dict[str, Any]] = []
        events = self._events(read_media=True) if self._voice is None else self._spoken(read_media=True)
        async for event in events:
            if isinstance(event, Text):
                pieces.append(event.text)
            elif isinstance(event, CallDone):
                calls.append(_tool_call(event))
            elif isinstance(event, _Audio):
                audio.append(base64.b64decode(event.data))
        text = "".join(pieces)
        if (failure := self.failure()) is not None:
            return failure.status, error_body(failure)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            message["content"] = text.strip() or None
            message["tool_calls"] = calls
        if self._voice is not None:
            message["content"] = None
            message["audio"] = {
                **self._audio_ref(),
                "data": _audio_file(self._voice, b"".join(audio)),
                "transcript": text,
            }
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish_reason()}
        body: dict[str, Any] = {
            "id": self._request.response_id,
            "object": "chat.completion",
            "created": self._created,
            "model": self._model,
            "choices": [choice],
            "usage": self._usage(),
        }
        if self._media:
            body["input_media"] = self._media
        return 200, body

    def _audio_ref(self) -> dict[str, Any]:
        # The audio is not kept here: its id names it, and it expires at once.
        return {"id": f"audio_{self._request.response_id}", "expires_at": self._created}

    async def chunks(self, *, include_usage: bool) -> AsyncIterator[str]:
        if self._voice is None:
            yield self._chunk({"role": "assistant", "content": ""})
            async for event in self._events():
                if (delta := _delta(event)) is not None:
                    yield self._chunk(delta)
        else:
            yield self._chunk({"role": "assistant", "content": None, "audio": {**self._audio_ref(), "transcript": ""}})
            async for spoken in self._spoken():
                if isinstance(spoken, _Audio):
                    yield self._chunk({"audio": {"data": spoken.data}})
                elif isinstance(spoken, Text):
                    yield self._chunk({"audio": {"transcript": spoken.text}})
                elif (delta := _delta(spoken)) is not None:
                    yield self._chunk(delta)
        if (failure := self.failure()) is not None:
            yield _sse(error_body(failure))
        else:
            yield self._chunk({}, finish_reason=self._finish_reason())
            if include_usage:
                yield _sse({**self._base(), "choices": [], "usage": self._usage()})
        yield "data: [DONE]\n\n"

    def _base(self) -> dict[str, Any]:
        return {
            "id": self._request.response_id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _sse({**self._base(), "choices": [choice]})


@dataclass(frozen=True)
class _Audio:
    data: str  # base64 PCM16


def _tool_call(call: CallDone) -> dict[str, Any]:
    return {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}


def _delta(event: Event) -> dict[str, Any] | None:
    """A streamed chunk's delta for text or a call, as OpenAI streams them: a call's id and name first,
    then its arguments in pieces."""
    if isinstance(event, Text):
        return {"content": event.text}
    if isinstance(event, CallStarted):
        function = {"name": event.name, "arguments": ""}
        return {"tool_calls": [{"index": event.index, "id": event.call_id, "type": "function", "function": function}]}
    if isinstance(event, CallArguments):
        return {"tool_calls": [{"index": event.index, "function": {"arguments": event.delta}}]}
    return None


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _speech_format(voice: AudioOutputParams) -> SpeechFormat:
    """Chat completions call raw PCM "pcm16"; the speech API, "pcm"."""
    return "pcm" if voice.format == "pcm16" else voice.format


def _audio_file(voice: AudioOutputParams, pcm: bytes) -> str:
    """The reply's whole audio, base64, in the asked format."""
    return base64.b64encode(whole_file(_speech_format(voice), pcm)).decode()
