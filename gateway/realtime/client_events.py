"""What the client sends: each frame decoded, checked and handed to the handler of its event type.

Every bad frame, and every failure of its handler, is answered with an `error` event carrying the
client's `event_id`; the connection stays usable. Only `ClientGone` gets out: nobody is left to tell.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.image_urls import image_bytes
from gateway.quotas import Budget
from gateway.realtime.client_socket import ClientGone, ClientSocket, Frame
from gateway.realtime.items import announce_item, check_length, checked_item
from gateway.realtime.runner import ResponseRunner
from gateway.realtime.state import SessionState
from gateway.realtime.turns import commit_buffer
from gateway.services import Services
from gateway.speech.stream import check_voice
from gateway.tools.check import check_tools, realtime_tools
from shared.errors import InvalidRequest
from shared.messages import (
    CLIENT_EVENT_TYPES,
    ClientEvent,
    ConversationItemCreate,
    ConversationItemDelete,
    ConversationItemDeleted,
    ConversationItemRetrieve,
    ConversationItemRetrieved,
    ConversationItemTruncate,
    ConversationItemTruncated,
    FunctionCallOutputItem,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCleared,
    InputAudioBufferCommit,
    MessageItem,
    OutputAudio,
    RateLimit,
    RateLimitsUpdated,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    SessionUpdated,
    parse_client_event,
    tool_choice_name,
)

Handler = Callable[[Any], Awaitable[None]]


class ClientEvents:
    def __init__(self, services: Services, socket: ClientSocket, state: SessionState, runner: ResponseRunner) -> None:
        self._services = services
        self._settings = services.settings
        self._socket = socket
        self._state = state
        self._runner = runner
        # Keyed by the event's class, so the event-type strings live only in shared/messages.
        self.handlers: dict[type, Handler] = {
            SessionUpdate: self._session_update,
            ConversationItemCreate: self._item_create,
            ConversationItemDelete: self._item_delete,
            ConversationItemRetrieve: self._item_retrieve,
            ConversationItemTruncate: self._item_truncate,
            InputAudioBufferAppend: self._audio_append,
            InputAudioBufferCommit: self._audio_commit,
            InputAudioBufferClear: self._audio_clear,
            ResponseCreate: self._response_create,
            ResponseCancel: self._response_cancel,
        }

    async def handle(self, frame: Frame) -> None:
        """Act on one frame; ClientGone is the only exception that gets out."""
        event_id: str | None = None
        try:
            raw = self._decode(frame)
            event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
            kind = raw.get("type")
            if not isinstance(kind, str):
                raise InvalidRequest(
                    "Every event needs a string 'type'.", code="missing_required_parameter", param="type"
                )
            if kind not in CLIENT_EVENT_TYPES:
                raise InvalidRequest(f"Unknown event type {kind[:64]!r}.", code="unknown_event", param="type")
            event: ClientEvent = parse_client_event(raw)
            await self.handlers[type(event)](event)
        except ClientGone:
            raise
        except Exception as exc:  # every failure becomes an error event; the socket stays open
            await self._socket.send_error(exc, event_id)

    def _decode(self, frame: Frame) -> dict[str, Any]:
        if frame.text is None:
            raise InvalidRequest("Send events as JSON text frames, not binary.", code="invalid_json")
        text, limit = frame.text, self._settings.max_ws_message_bytes
        if len(text) > limit or len(text.encode()) > limit:  # the first test spares encoding a huge frame
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
        session = self._state.session.merged(patch)
        check_voice(self._settings, session.audio.output.voice, "session.audio.output.voice")
        check_tools(
            realtime_tools(session.tools),
            tool_choice_name(session.tool_choice),
            max_chars=self._settings.max_tools_chars,
            param="session.tools",
        )
        self._state.audio.set_format(session.audio.input.format)  # refused while audio is buffered
        self._state.session = session
        await self._services.sessions.save(session)
        await self._socket.send(SessionUpdated(session=session))

    async def _item_create(self, event: ConversationItemCreate) -> None:
        sid = self._state.session_id
        checked = checked_item(event.item, self._settings, self._state.session.audio.input.format)
        if checked.pictures:
            await self._spend("frames", len(checked.pictures))
        pictures = [(index, await image_bytes(url, self._settings)) for index, url in checked.pictures]
        item = checked.item
        if isinstance(item, FunctionCallOutputItem) and not await self._services.sessions.has_call(sid, item.call_id):
            raise InvalidRequest(
                f"No function_call item with call_id '{item.call_id}' is in the conversation.", param="item.call_id"
            )
        self._runner.idle.disarm()
        previous = await self._services.sessions.add_item(sid, item, event.previous_item_id)
        await announce_item(self._socket, item, previous, done=not item.pending_media())
        # Transcripts and descriptions follow (relayed from the workers); then conversation.item.done.
        if checked.speech is not None:
            await self._services.audio.transcribe_item(sid, item.id, checked.speech)
        frame = isinstance(item, MessageItem) and item.images_only() and len(pictures) == 1
        for index, data in pictures:
            await self._services.images.describe(sid, item.id, index, data, frame=frame)

    async def _item_delete(self, event: ConversationItemDelete) -> None:
        await self._services.sessions.delete_item(self._state.session_id, event.item_id)
        await self._socket.send(ConversationItemDeleted(item_id=event.item_id))

    async def _item_retrieve(self, event: ConversationItemRetrieve) -> None:
        item = await self._services.sessions.get_item(self._state.session_id, event.item_id)
        await self._socket.send(ConversationItemRetrieved(item=item))

    async def _item_truncate(self, event: ConversationItemTruncate) -> None:
        """Cut a spoken reply to what the user heard: its transcript keeps only the words played.

        A reply still running (the usual case: the user spoke over it) takes the cut when it ends.
        """
        sid = self._state.session_id
        item = await self._services.sessions.get_item(sid, event.item_id)
        if not isinstance(item, MessageItem):
            raise InvalidRequest("Only the audio of an assistant message can be truncated.", param="item_id")
        index, end_ms = event.content_index, event.audio_end_ms
        spoken = self._state.spoken.get(item.id)
        running = spoken is not None and item.status == "in_progress"
        has_audio = index < len(item.content) and isinstance(item.content[index], OutputAudio)
        if item.role != "assistant" or not (running or has_audio) or (running and index != 0):
            raise InvalidRequest("Only the audio of an assistant message can be truncated.", param="content_index")
        played = spoken.played_ms if spoken is not None else 0
        if end_ms > played:
            raise InvalidRequest(
                f"audio_end_ms ({end_ms}) is past the end of the audio sent ({played} ms).", param="audio_end_ms"
            )
        if spoken is not None:
            spoken.truncated_ms = end_ms
        if not running:
            content = list(item.content)
            content[index] = OutputAudio(type="output_audio", transcript=spoken.heard(end_ms) if spoken else "")
            await self._services.sessions.replace_item(sid, item.model_copy(update={"content": content}))
        await self._socket.send(ConversationItemTruncated(item_id=item.id, content_index=index, audio_end_ms=end_ms))

    # --- input audio ----------------------------------------------------------------------------

    async def _audio_append(self, event: InputAudioBufferAppend) -> None:
        audio = self._state.audio
        await self._spend("audio_seconds", audio.seconds_in(event.audio), report=False)
        await audio.append(event.audio, vad=self._state.session.audio.input.turn_detection is not None)

    async def _audio_commit(self, _event: Any) -> None:
        self._state.audio.check_commit()
        self._runner.idle.disarm()
        await commit_buffer(self._services, self._socket, self._state)

    async def _audio_clear(self, _event: Any) -> None:
        await self._state.audio.clear()
        await self._socket.send(InputAudioBufferCleared())

    # --- responses ------------------------------------------------------------------------------

    async def _response_create(self, event: ResponseCreate) -> None:
        await self._spend("requests")
        await self._runner.create(event.response)

    async def _response_cancel(self, event: ResponseCancel) -> None:
        await self._runner.cancel(event.response_id)

    async def _spend(self, budget: Budget, amount: float = 1.0, *, report: bool = True) -> None:
        """Take from one of the key's budgets (RateLimited when spent) and say what is left."""
        left = await self._services.quotas.take(self._state.owner, budget, amount)
        if left is not None and report:
            limit = RateLimit(name=budget, limit=left.limit, remaining=left.remaining, reset_seconds=left.reset_seconds)
            await self._socket.send(RateLimitsUpdated(rate_limits=[limit]))
