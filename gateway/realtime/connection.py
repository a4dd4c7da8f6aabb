"""One object per websocket: parse client events, keep the session, run one response at a time.

Every bad frame is answered with an `error` event and the connection stays usable. Sending is
serialised by a lock because responses and worker events stream while client events keep
arriving. A second task relays what audio workers report (speech started/stopped, transcripts,
turns committed by server VAD) and acts on it: barge-in cancels the running response, a VAD turn
starts one. When the socket closes, the running response is cancelled, and the session's keys go with
those of its ended responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.auth import owner_of
from gateway.image_urls import image_bytes
from gateway.quotas import Budget
from gateway.realtime.audio_input import AudioInputBuffer
from gateway.realtime.items import check_length, checked_item
from gateway.realtime.responder import stream_response
from gateway.services import Services
from shared.errors import InvalidRequest, RateLimited, error_info
from shared.messages import (
    CLIENT_EVENT_TYPES,
    AudioCommitted,
    ClientEvent,
    ConversationItemAdded,
    ConversationItemCreate,
    ConversationItemCreated,
    ConversationItemDelete,
    ConversationItemDeleted,
    ConversationItemDone,
    ConversationItemInputImageDropped,
    ConversationItemRetrieve,
    ConversationItemRetrieved,
    ErrorDetail,
    ErrorEvent,
    GenerateRequest,
    ImageDescribed,
    ImageDropped,
    ImageFailed,
    InputAudio,
    InputAudioBufferAppend,
    InputAudioBufferCleared,
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    InputAudioTranscriptionCompleted,
    InputAudioTranscriptionDelta,
    InputAudioTranscriptionFailed,
    MessageItem,
    RateLimit,
    RateLimitsUpdated,
    Response,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseParams,
    ServerEvent,
    Session,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    TranscriptDone,
    TranscriptFailed,
    TranscriptionUsage,
    new_id,
    parse_client_event,
)
from shared.metrics import ERRORS

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None]]
_EVENTS_BLOCK_MS = 1000


class ClientGone(Exception):
    """The client's socket is closed: nothing more can be sent to it."""


class RealtimeConnection:
    def __init__(self, ws: WebSocket, services: Services) -> None:
        self._ws = ws
        self._services = services
        self._owner = owner_of(ws.state)  # whose budgets this session spends (gateway.quotas)
        self._settings = s = services.settings
        self._send_lock = asyncio.Lock()
        self._response_id: str | None = None
        self._response_task: asyncio.Task[None] | None = None
        self._ended_responses: list[str] = []  # their keys go with the session (gateway.services.responses)
        self._auto_response_due = False
        self._closing = False  # the socket has closed: the relay of worker events stops (see there)
        self.session = Session(
            id=new_id("sess"),
            model=s.served_model_name,
            instructions=s.default_instructions,
            temperature=s.default_temperature,
            fusion=s.fusion_mode,
        )
        self._audio = AudioInputBuffer(
            services.audio, self.session.id, self.session.audio.input.format, max_seconds=s.max_audio_buffer_s
        )
        self._handlers: dict[str, Handler] = {
            "session.update": self._session_update,
            "conversation.item.create": self._item_create,
            "conversation.item.delete": self._item_delete,
            "conversation.item.retrieve": self._item_retrieve,
            "input_audio_buffer.append": self._audio_append,
            "input_audio_buffer.commit": self._audio_commit,
            "input_audio_buffer.clear": self._audio_clear,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }
        self._worker_handlers: dict[type, Callable[[Any], Awaitable[None]]] = {
            SpeechStarted: self._on_speech_started,
            SpeechStopped: self._on_speech_stopped,
            AudioCommitted: self._on_committed,
            TranscriptDelta: self._on_transcript_delta,
            TranscriptDone: self._on_transcript_done,
            TranscriptFailed: self._on_transcript_failed,
            ImageDescribed: self._on_image_described,
            ImageDropped: self._on_image_dropped,
            ImageFailed: self._on_image_failed,
        }

    async def run(self) -> None:
        try:
            await self._services.quotas.open_session(self._owner, self.session.id)
        except RateLimited as exc:
            await self.send_error(exc, None)
            await self._ws.close(code=1008)
            return
        try:
            await self._serve()
        finally:
            await self._services.quotas.close_session(self._owner, self.session.id)

    async def _serve(self) -> None:
        await self._services.sessions.save(self.session)
        relay = asyncio.create_task(self._relay_worker_events(), name=f"relay-{self.session.id}")
        try:
            # Inside: a client gone before this was sent is a disconnect, and its session is dropped.
            await self.send(SessionCreated(session=self.session))
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._on_frame(message.get("text"), message.get("bytes"))
        except (WebSocketDisconnect, ClientGone):
            pass
        finally:
            self._closing = True
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
            await self._close()

    async def send(self, event: ServerEvent) -> None:
        """Send one event; ClientGone when the socket is closed (by the client, or by uvicorn under
        a frame too large), however the ASGI server says so."""
        async with self._send_lock:
            try:
                await self._ws.send_text(event.model_dump_json())
            except (WebSocketDisconnect, RuntimeError) as exc:  # RuntimeError: a send after the close
                raise ClientGone from exc

    async def send_error(self, exc: BaseException, event_id: str | None) -> None:
        info = error_info(exc)
        ERRORS.labels(info.code).inc()
        detail = ErrorDetail(type=info.type, code=info.code, message=info.message, param=info.param, event_id=event_id)
        await self.send(ErrorEvent(error=detail))

    # --- frames -> events -----------------------------------------------------------------------

    async def _on_frame(self, text: str | None, data: bytes | None) -> None:
        event_id: str | None = None
        try:
            raw = self._decode(text, data)
            event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
            kind = raw.get("type")
            if not isinstance(kind, str):
                raise InvalidRequest(
                    "Every event needs a string 'type'.", code="missing_required_parameter", param="type"
                )
            if kind not in CLIENT_EVENT_TYPES:
                raise InvalidRequest(f"Unknown event type {kind[:64]!r}.", code="unknown_event", param="type")
            event: ClientEvent = parse_client_event(raw)
            await self._handlers[kind](event)
        except ClientGone:
            raise  # nobody to tell: the session ends
        except Exception as exc:  # every failure becomes an error event; the socket stays open
            await self.send_error(exc, event_id)

    def _decode(self, text: str | None, data: bytes | None) -> dict[str, Any]:
        if text is None:
            raise InvalidRequest("Send events as JSON text frames, not binary.", code="invalid_json")
        limit = self._settings.max_ws_message_bytes
        if len(text) > limit or len(text.encode()) > limit:
            raise InvalidRequest(f"Event is larger than {limit} bytes.", code="message_too_large")
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise InvalidRequest("The event is not valid JSON.", code="invalid_json") from exc
        if not isinstance(raw, dict):
            raise InvalidRequest("An event must be a JSON object.", code="invalid_json")
        return raw

    # --- session and conversation ---------------------------------------------------------------

    async def _session_update(self, event: SessionUpdate) -> None:
        patch = event.session
        if patch.model is not None and not self._settings.accepts_model(patch.model):
            raise InvalidRequest(
                f"Model {patch.model!r} is not served here.", code="model_not_found", param="session.model"
            )
        if patch.instructions is not None:
            check_length(patch.instructions, self._settings.max_instructions_chars, "session.instructions")
        session = self.session.merged(patch)
        self._audio.set_format(session.audio.input.format)
        self.session = session
        await self._services.sessions.save(self.session)
        await self.send(SessionUpdated(session=self.session))

    async def _item_create(self, event: ConversationItemCreate) -> None:
        checked = checked_item(event.item, self._settings, self.session.audio.input.format)
        if checked.pictures:
            await self._spend("frames", len(checked.pictures))
        pictures = [(index, await image_bytes(url, self._settings)) for index, url in checked.pictures]
        item = checked.item
        assert item.id is not None
        previous = await self._services.sessions.add_item(self.session.id, item, event.previous_item_id)
        await self._announce_item(item, previous, done=not item.pending_media())
        # Transcripts and descriptions follow; then conversation.item.done.
        if checked.speech is not None:
            await self._services.audio.transcribe_item(self.session.id, item.id, checked.speech)
        frame = item.images_only() and len(pictures) == 1
        for index, data in pictures:
            await self._services.images.describe(self.session.id, item.id, index, data, frame=frame)

    async def _item_delete(self, event: ConversationItemDelete) -> None:
        await self._services.sessions.delete_item(self.session.id, event.item_id)
        await self.send(ConversationItemDeleted(item_id=event.item_id))

    async def _item_retrieve(self, event: ConversationItemRetrieve) -> None:
        item = await self._services.sessions.get_item(self.session.id, event.item_id)
        await self.send(ConversationItemRetrieved(item=item))

    async def _announce_item(self, item: MessageItem, previous: str | None, *, done: bool) -> None:
        await self.send(ConversationItemAdded(previous_item_id=previous, item=item))
        await self.send(ConversationItemCreated(previous_item_id=previous, item=item))
        if done:
            await self.send(ConversationItemDone(previous_item_id=previous, item=item))

    # --- input audio ----------------------------------------------------------------------------

    async def _audio_append(self, event: InputAudioBufferAppend) -> None:
        await self._spend("audio_seconds", self._audio.seconds_in(event.audio), report=False)
        await self._audio.append(event.audio, vad=self.session.audio.input.turn_detection is not None)

    async def _audio_commit(self, _event: Any) -> None:
        self._audio.check_commit()
        item = MessageItem(id=self._audio.item_id, role="user", content=[InputAudio(type="input_audio")])
        assert item.id is not None
        previous = await self._services.sessions.add_item(self.session.id, item, None)
        await self._audio.commit()
        await self.send(InputAudioBufferCommitted(previous_item_id=previous, item_id=item.id))
        await self._announce_item(item, previous, done=False)

    async def _audio_clear(self, _event: Any) -> None:
        await self._audio.clear()
        await self.send(InputAudioBufferCleared())

    # --- responses ------------------------------------------------------------------------------

    async def _response_create(self, event: ResponseCreate) -> None:
        await self._spend("requests")
        await self._start_response(event.response)

    async def _spend(self, budget: Budget, amount: float = 1.0, *, report: bool = True) -> None:
        """Take from one of the key's budgets (RateLimited when spent) and say what is left."""
        left = await self._services.quotas.take(self._owner, budget, amount)
        if left is not None and report:
            limit = RateLimit(name=budget, limit=left.limit, remaining=left.remaining, reset_seconds=left.reset_seconds)
            await self.send(RateLimitsUpdated(rate_limits=[limit]))

    async def _start_response(self, params: ResponseParams) -> None:
        if self._response_task is not None:
            raise InvalidRequest(
                f"Conversation already has an active response in progress: {self._response_id}.",
                code="conversation_already_has_active_response",
            )
        s = self._settings
        instructions = params.instructions if params.instructions is not None else self.session.instructions
        check_length(instructions, s.max_instructions_chars, "response.instructions")
        max_tokens = params.max_output_tokens or self.session.max_output_tokens
        in_conversation = params.conversation == "auto"
        response = Response(
            id=new_id("resp"),
            conversation_id=self.session.id if in_conversation else None,
            max_output_tokens=max_tokens,
            metadata=params.metadata,
        )
        request = GenerateRequest(
            response_id=response.id,
            session_id=self.session.id,
            item_ids=await self._services.sessions.item_ids(self.session.id),
            instructions=instructions,
            temperature=params.temperature if params.temperature is not None else self.session.temperature,
            top_p=s.default_top_p,
            fusion=self.session.fusion,
            max_output_tokens=s.max_output_tokens_cap
            if max_tokens == "inf"
            else min(max_tokens, s.max_output_tokens_cap),
        )
        self._response_id = response.id
        await self.send(ResponseCreated(response=response))
        self._response_task = asyncio.create_task(self._run_response(response, request, in_conversation))

    async def _response_cancel(self, event: ResponseCancel) -> None:
        active = self._response_id
        if active is None or (event.response_id is not None and event.response_id != active):
            raise InvalidRequest(
                "There is no active response to cancel.",
                code="response_cancel_not_active",
                param="response_id" if event.response_id else None,
            )
        await self._services.decoder.cancel(active)

    async def _run_response(self, response: Response, request: GenerateRequest, in_conversation: bool) -> None:
        try:
            await stream_response(
                response,
                request,
                decoder=self._services.decoder,
                sessions=self._services.sessions,
                send=self.send,
                in_conversation=in_conversation,
            )
        except ClientGone:
            log.info("client left during response %s", response.id)
        except Exception as exc:
            log.exception("response %s failed in the gateway", response.id)
            with contextlib.suppress(Exception):
                await self.send_error(exc, None)
        else:
            self._ended_responses.append(response.id)
        finally:
            self._response_id = None
            self._response_task = None
        if self._auto_response_due:
            self._auto_response_due = False
            await self._start_response(ResponseParams())

    # --- what audio workers report ----------------------------------------------------------------

    async def _relay_worker_events(self) -> None:
        after = "0-0"
        # Cancelling this task is not enough to end it: on Python 3.11 a cancel that lands while
        # redis-py sends a command is lost (its asyncio.wait_for returns the finished send), and the
        # loop would read on forever, so the session would never close. `_closing` ends it within
        # one read instead.
        while not self._closing:
            try:
                entries = await self._services.audio.events(self.session.id, after, _EVENTS_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reading worker events of %s failed; retrying", self.session.id, exc_info=True)
                await asyncio.sleep(1)
                continue
            for entry_id, event in entries:
                after = entry_id
                try:
                    await self._worker_handlers[type(event)](event)
                except ClientGone:
                    return
                except Exception as exc:
                    log.exception("handling %s failed", event.type)
                    with contextlib.suppress(Exception):
                        await self.send_error(exc, None)

    async def _on_speech_started(self, event: SpeechStarted) -> None:
        self._audio.speaking = True
        await self.send(InputAudioBufferSpeechStarted(audio_start_ms=event.audio_start_ms, item_id=event.item_id))
        vad = self.session.audio.input.turn_detection
        if vad is not None and vad.interrupt_response and self._response_id is not None:
            await self._services.decoder.cancel(self._response_id, "turn_detected")

    async def _on_speech_stopped(self, event: SpeechStopped) -> None:
        await self.send(InputAudioBufferSpeechStopped(audio_end_ms=event.audio_end_ms, item_id=event.item_id))

    async def _on_committed(self, event: AudioCommitted) -> None:
        if not event.by_vad:
            return  # the gateway announced the client's own commit already
        self._audio.committed_by_vad()
        item = MessageItem(id=event.item_id, role="user", content=[InputAudio(type="input_audio")])
        await self.send(InputAudioBufferCommitted(previous_item_id=event.previous_item_id, item_id=event.item_id))
        await self._announce_item(item, event.previous_item_id, done=False)
        vad = self.session.audio.input.turn_detection
        if vad is not None and vad.create_response:
            if self._response_task is None:
                await self._start_response(ResponseParams())
            else:
                self._auto_response_due = True  # after the running (usually just cancelled) one ends

    async def _on_transcript_delta(self, event: TranscriptDelta) -> None:
        if self._transcripts_on():
            await self.send(InputAudioTranscriptionDelta(item_id=event.item_id, delta=event.delta))

    async def _on_transcript_done(self, event: TranscriptDone) -> None:
        if self._transcripts_on():
            await self.send(
                InputAudioTranscriptionCompleted(
                    item_id=event.item_id,
                    transcript=event.transcript,
                    usage=TranscriptionUsage(seconds=round(event.duration_s, 3)),
                )
            )
        await self._item_done(event.item_id)

    async def _on_transcript_failed(self, event: TranscriptFailed) -> None:
        error = ErrorDetail(type="invalid_request_error", code=event.code, message=event.message)
        await self.send(InputAudioTranscriptionFailed(item_id=event.item_id, error=error))
        await self._item_done(event.item_id)

    async def _on_image_described(self, event: ImageDescribed) -> None:
        await self._item_done(event.item_id)

    async def _on_image_dropped(self, event: ImageDropped) -> None:
        await self.send(
            ConversationItemInputImageDropped(
                item_id=event.item_id, reason=event.reason, kept_item_id=event.kept_item_id
            )
        )
        await self.send(ConversationItemDeleted(item_id=event.item_id))

    async def _on_image_failed(self, event: ImageFailed) -> None:
        await self.send_error(
            InvalidRequest(
                f"{event.message} (item {event.item_id})",
                # No image worker finished it in time, or the picture itself is bad.
                code="media_unavailable" if event.code == "media_unavailable" else "invalid_image",
                param="item.content.image_url",
            ),
            None,
        )
        await self._item_done(event.item_id)

    async def _item_done(self, item_id: str) -> None:
        """Announce an item once every transcript and description in it is in."""
        with contextlib.suppress(InvalidRequest):  # deleted meanwhile: nothing to announce
            item = await self._services.sessions.get_item(self.session.id, item_id)
            if not item.pending_media():
                await self.send(ConversationItemDone(previous_item_id=None, item=item))

    def _transcripts_on(self) -> bool:
        return self.session.audio.input.transcription is not None

    # --- helpers --------------------------------------------------------------------------------

    async def _close(self) -> None:
        task, rid = self._response_task, self._response_id
        if task is not None and rid is not None:
            try:
                await self._services.decoder.cancel(rid)
            except Exception:
                log.warning("could not cancel response %s", rid, exc_info=True)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self._services.sessions.drop(self.session.id)
            # The one still running at close keeps its keys (its worker reads the cancel flag); they expire.
            await self._services.responses.forget(self._ended_responses)
        except Exception:
            log.warning("could not drop session %s", self.session.id, exc_info=True)
