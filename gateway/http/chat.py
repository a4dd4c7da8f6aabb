"""`POST /v1/chat/completions` and `GET /v1/models`, OpenAI-compatible.

A request becomes a short-lived conversation in Redis: its messages are items (pictures go to the
image workers, speech to the audio workers, as over the websocket), and the decoder answers it
through the same queue and response stream. `stream: true` relays the reply as server-sent
`chat.completion.chunk` events ending with `[DONE]`; a client that goes away cancels the work.
Stop sequences are cut here, on the text as it streams (`stops.StopFilter`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.http.errors import error_body
from gateway.http.stops import StopFilter
from gateway.realtime.images import image_bytes
from gateway.services import Services
from shared.errors import ErrorCode, ErrorInfo, InvalidRequest, NotFound, TooLarge
from shared.messages import (
    GenerateRequest,
    InputAudio,
    InputImage,
    InputText,
    MessageItem,
    OutputText,
    ResponseFinal,
    TokenDelta,
    new_id,
)

router = APIRouter()

_MAX_MESSAGES = 256
_MAX_STOPS = 4
_FAILURE_STATUS = {"decoder_unavailable": 503, "timeout": 503}
_cleanups: set[asyncio.Task[None]] = set()


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ImageUrl(_Body):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class ImagePart(_Body):
    type: Literal["image_url"]
    image_url: ImageUrl


class AudioData(_Body):
    data: str  # base64
    format: Literal["wav", "mp3"]


class AudioPart(_Body):
    type: Literal["input_audio"]
    input_audio: AudioData


Part = Annotated[TextPart | ImagePart | AudioPart, Field(discriminator="type")]


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part] | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class ChatCompletionRequest(_Body):
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=_MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(stops) > _MAX_STOPS:
            raise InvalidRequest(f"At most {_MAX_STOPS} stop sequences.", param="stop")
        return stops


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    s = request.app.state.services.settings
    ids = [s.served_model_name, *s.model_aliases, s.asr_served_name]
    return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "mmstream"} for i in ids]}


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(request: Request, body: ChatCompletionRequest) -> Response:
    services: Services = request.app.state.services
    s = services.settings
    if not s.accepts_model(body.model):
        raise NotFound(
            f"The model '{body.model}' does not exist; use '{s.served_model_name}'.",
            code="model_not_found",
            param="model",
        )
    if body.n not in (None, 1):
        raise InvalidRequest("Only n=1 is supported: one choice per request.", param="n")
    stops = body.stops()
    session_id = new_id("chat")
    instructions, item_ids = await _store_messages(services, session_id, body.messages)
    limit = body.max_completion_tokens or body.max_tokens or s.max_output_tokens_cap
    generate = GenerateRequest(
        response_id=new_id("chatcmpl"),
        session_id=session_id,
        item_ids=item_ids,
        instructions=instructions if instructions is not None else s.default_instructions,
        temperature=body.temperature if body.temperature is not None else s.default_temperature,
        top_p=body.top_p if body.top_p is not None else s.default_top_p,
        max_output_tokens=min(limit, s.max_output_tokens_cap),
        seed=body.seed,
        fusion=s.fusion_mode,
    )
    completion = _Completion(services, generate, body.model, StopFilter(stops))
    if body.stream:
        usage = body.stream_options is not None and body.stream_options.include_usage
        return StreamingResponse(completion.chunks(include_usage=usage), media_type="text/event-stream")
    return await completion.whole()


async def _store_messages(
    services: Services, session_id: str, messages: list[ChatMessage]
) -> tuple[str | None, list[str]]:
    """System and developer messages become the instructions; the others, items of the conversation."""
    instructions: list[str] = []
    item_ids: list[str] = []
    for n, message in enumerate(messages):
        if message.role in ("system", "developer"):
            instructions.append(_plain_text(message, n))
            continue
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
        assert item.id is not None
        await services.sessions.add_item(session_id, item, None)
        item_ids.append(item.id)
        for index, data, kind in media:
            if kind == "image":
                await services.images.describe(session_id, item.id, index, data, frame=False)
            else:
                await services.audio.transcribe_item(session_id, item.id, data, encoding="file")
    return ("\n\n".join(instructions) if instructions else None), item_ids


def _plain_text(message: ChatMessage, n: int) -> str:
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


class _Completion:
    """One answer: relays the decoder's stream, cuts it at a stop sequence, shapes it as OpenAI does."""

    def __init__(self, services: Services, request: GenerateRequest, model: str, stops: StopFilter) -> None:
        self._services = services
        self._request = request
        self._model = model
        self._stops = stops
        self._created = int(time.time())
        self._final: ResponseFinal | None = None

    async def _text(self) -> AsyncIterator[str]:
        """The reply's text as it comes; sets `_final`. Cancels the generation at a stop sequence."""
        rid = self._request.response_id
        try:
            async for event in self._services.decoder.generate(self._request):
                if isinstance(event, TokenDelta) and not self._stops.stopped:
                    if text := self._stops.push(event.text):
                        yield text
                    if self._stops.stopped:
                        await self._services.decoder.cancel(rid, "stop_sequence")
                elif isinstance(event, ResponseFinal):
                    self._final = event
            if tail := self._stops.flush():
                yield tail
        finally:
            # In a task of its own: when the client went away, this generator is being cancelled.
            task = asyncio.get_running_loop().create_task(self._clean_up(cancel=self._final is None))
            _cleanups.add(task)
            task.add_done_callback(_cleanups.discard)

    async def _clean_up(self, *, cancel: bool) -> None:
        if cancel:  # the client went away mid-stream: stop the work
            await self._services.decoder.cancel(self._request.response_id, "client_disconnected")
        await self._services.sessions.forget(self._request.session_id)

    def _finish_reason(self) -> str:
        final = self._final
        if self._stops.stopped or final is None or final.status == "completed":
            return "stop"
        return "length" if final.status == "incomplete" else "stop"

    def _usage(self) -> dict[str, Any]:
        u = self._final.usage if self._final is not None else None
        prompt, completion, cached = (u.input_tokens, u.output_tokens, u.cached_tokens) if u else (0, 0, 0)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    def _failure(self) -> ErrorInfo | None:
        final = self._final
        if final is None or final.status != "failed" or self._stops.stopped:
            return None
        code = final.error_code or "server_error"
        status = _FAILURE_STATUS.get(code, 500)
        message = final.error_message or "The decoder failed."
        error_code: ErrorCode = "decoder_unavailable" if status == 503 else "server_error"
        return ErrorInfo("server_error", error_code, message, None, status)

    async def whole(self) -> Response:
        text = "".join([piece async for piece in self._text()])
        if (failure := self._failure()) is not None:
            return JSONResponse(error_body(failure), status_code=failure.status)
        message = {"role": "assistant", "content": text, "refusal": None}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self._finish_reason()}
        return JSONResponse(
            {
                "id": self._request.response_id,
                "object": "chat.completion",
                "created": self._created,
                "model": self._model,
                "choices": [choice],
                "usage": self._usage(),
            }
        )

    async def chunks(self, *, include_usage: bool) -> AsyncIterator[str]:
        yield self._chunk({"role": "assistant", "content": ""})
        async for text in self._text():
            yield self._chunk({"content": text})
        if (failure := self._failure()) is not None:
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


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"
