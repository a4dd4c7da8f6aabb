"""The `/v1/realtime` endpoint."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from gateway.auth import chosen_subprotocol
from gateway.realtime.connection import RealtimeConnection
from gateway.services import Services
from shared.messages import ErrorDetail, ErrorEvent
from shared.metrics import ACTIVE_SESSIONS

router = APIRouter()


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket, model: str | None = None) -> None:
    """A conversation over the OpenAI Realtime protocol (GA event names; beta aliases where cheap).

    1. The client connects (optionally `?model=<served model>`); the server sends `session.created`.
    2. `session.update` sets instructions, sampling, fusion, the audio input format and turn
       detection -> `session.updated`.
    3. `conversation.item.create` adds a message (`input_text`, `input_image`, `input_audio` parts) ->
       `conversation.item.added` / `.created` / `.done`; pictures are described and speech is
       transcribed by the workers, whose events follow.
    4. `input_audio_buffer.append|commit|clear` stream speech; with server VAD the end of a turn
       commits it and starts a response (`input_audio_buffer.speech_started|speech_stopped|committed`,
       `conversation.item.input_audio_transcription.delta|completed`).
    5. `response.create` starts a reply from the conversation -> `response.created`,
       `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`...,
       their `.done` events and `response.done` (completed, cancelled, incomplete or failed, with
       usage). One response runs at a time.
    6. `response.cancel` stops the running response (`cancelled`); so does disconnecting.
    Any bad event gets an `error` event and the connection stays open (docs/protocol.md lists them all).
    """
    services: Services = ws.app.state.services
    await ws.accept(subprotocol=chosen_subprotocol(ws.scope))
    if model is not None and not services.settings.accepts_model(model):
        error = ErrorDetail(
            type="invalid_request_error",
            code="model_not_found",
            param="model",
            message=f"Model {model!r} is not served here; use {services.settings.served_model_name!r}.",
        )
        await ws.send_text(ErrorEvent(error=error).model_dump_json())
        await ws.close(code=1008)
        return
    ACTIVE_SESSIONS.inc()
    try:
        await RealtimeConnection(ws, services).run()
    finally:
        ACTIVE_SESSIONS.dec()
