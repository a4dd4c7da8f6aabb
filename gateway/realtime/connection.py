"""One object per websocket: parse client events, keep the session, run one response at a time.

Every bad frame is answered with an `error` event and the connection stays usable. Sending is
serialised by a lock because the response streams while client events keep arriving. When the
socket closes, the running response is cancelled and the session's keys are removed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.realtime.responder import stream_response
from gateway.services import Services
from shared.errors import InvalidRequest, error_info
from shared.messages import (
    CLIENT_EVENT_TYPES,
    ClientEvent,
    ConversationItemAdded,
    ConversationItemCreate,
    ConversationItemCreated,
    ConversationItemDelete,
    ConversationItemDeleted,
    ConversationItemDone,
    ConversationItemRetrieve,
    ConversationItemRetrieved,
    ErrorDetail,
    ErrorEvent,
    GenerateRequest,
    InputText,
    MessageItem,
    OutputText,
    Response,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ServerEvent,
    Session,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    new_id,
    parse_client_event,
)

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[None]]


class RealtimeConnection:
    def __init__(self, ws: WebSocket, services: Services) -> None:
        self._ws = ws
        self._services = services
        self._settings = services.settings
        self._send_lock = asyncio.Lock()
        self._response_id: str | None = None
        self._response_task: asyncio.Task[None] | None = None
        s = services.settings
        self.session = Session(
            id=new_id("sess"),
            model=s.served_model_name,
            instructions=s.default_instructions,
            temperature=s.default_temperature,
        )
        self._handlers: dict[str, Handler] = {
            "session.update": self._session_update,
            "conversation.item.create": self._item_create,
            "conversation.item.delete": self._item_delete,
            "conversation.item.retrieve": self._item_retrieve,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }

    async def run(self) -> None:
        await self._services.sessions.save(self.session)
        await self.send(SessionCreated(session=self.session))
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                await self._on_frame(message.get("text"), message.get("bytes"))
        except WebSocketDisconnect:
            pass
        finally:
            await self._close()

    async def send(self, event: ServerEvent) -> None:
        async with self._send_lock:
            await self._ws.send_text(event.model_dump_json())

    async def send_error(self, exc: BaseException, event_id: str | None) -> None:
        info = error_info(exc)
        await self.send(
            ErrorEvent(
                error=ErrorDetail(
                    type=info.type, code=info.code, message=info.message, param=info.param, event_id=event_id
                )
            )
        )

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

    # --- handlers -------------------------------------------------------------------------------

    async def _session_update(self, event: SessionUpdate) -> None:
        patch = event.session
        if patch.model is not None and not self._settings.accepts_model(patch.model):
            raise InvalidRequest(
                f"Model {patch.model!r} is not served here.", code="model_not_found", param="session.model"
            )
        if patch.instructions is not None:
            self._check_length(patch.instructions, self._settings.max_instructions_chars, "session.instructions")
        self.session = self.session.merged(patch)
        await self._services.sessions.save(self.session)
        await self.send(SessionUpdated(session=self.session))

    async def _item_create(self, event: ConversationItemCreate) -> None:
        item = self._checked_item(event.item)
        sessions = self._services.sessions
        previous = await sessions.add_item(self.session.id, item, event.previous_item_id)
        await self.send(ConversationItemAdded(previous_item_id=previous, item=item))
        await self.send(ConversationItemCreated(previous_item_id=previous, item=item))
        await self.send(ConversationItemDone(previous_item_id=previous, item=item))

    async def _item_delete(self, event: ConversationItemDelete) -> None:
        await self._services.sessions.delete_item(self.session.id, event.item_id)
        await self.send(ConversationItemDeleted(item_id=event.item_id))

    async def _item_retrieve(self, event: ConversationItemRetrieve) -> None:
        item = await self._services.sessions.get_item(self.session.id, event.item_id)
        await self.send(ConversationItemRetrieved(item=item))

    async def _response_create(self, event: ResponseCreate) -> None:
        if self._response_task is not None:
            raise InvalidRequest(
                f"Conversation already has an active response in progress: {self._response_id}.",
                code="conversation_already_has_active_response",
            )
        params, s = event.response, self._settings
        instructions = params.instructions if params.instructions is not None else self.session.instructions
        self._check_length(instructions, s.max_instructions_chars, "response.instructions")
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
        except (WebSocketDisconnect, RuntimeError):
            log.info("client left during response %s", response.id)
        except Exception as exc:
            log.exception("response %s failed in the gateway", response.id)
            try:
                await self.send_error(exc, None)
            except Exception:
                log.debug("could not report the failure of %s", response.id)
        finally:
            self._response_id = None
            self._response_task = None

    # --- helpers --------------------------------------------------------------------------------

    def _checked_item(self, item: MessageItem) -> MessageItem:
        if not item.content:
            raise InvalidRequest("A message needs at least one content part.", param="item.content")
        for part in item.content:
            allowed = OutputText if item.role == "assistant" else InputText
            if not isinstance(part, allowed):
                raise InvalidRequest(
                    f"Content of type {part.type!r} is not allowed in a {item.role} message.", param="item.content.type"
                )
            self._check_length(part.text, self._settings.max_text_chars, "item.content.text")
        content = [
            OutputText(type="output_text", text=p.text) if isinstance(p, OutputText) else p for p in item.content
        ]
        return item.model_copy(update={"id": item.id or new_id("item"), "status": "completed", "content": content})

    @staticmethod
    def _check_length(text: str, limit: int, param: str) -> None:
        if len(text) > limit:
            raise InvalidRequest(f"'{param}' is longer than {limit} characters.", param=param)

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
        except Exception:
            log.warning("could not drop session %s", self.session.id, exc_info=True)
