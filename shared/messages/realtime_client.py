"""Realtime client events (websocket, client -> gateway), parsed through `parse_client_event`.

The union `ClientEvent` is the one list of them: the set of known event types is read off its members.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import Field, TypeAdapter

from shared.messages.base import ClientModel
from shared.messages.items import Item
from shared.messages.session import OutputModality, RealtimeTool, RealtimeToolChoice, SessionPatch


class ResponseParams(ClientModel):
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | Literal["inf"] | None = None
    output_modalities: list[OutputModality] | None = Field(None, min_length=1, max_length=2)
    modalities: list[OutputModality] | None = Field(None, min_length=1, max_length=2)  # beta name
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    conversation: Literal["auto", "none"] = "auto"
    metadata: dict[str, str] | None = None
    tools: list[RealtimeTool] | None = None
    tool_choice: RealtimeToolChoice | None = None


class SessionUpdate(ClientModel):
    type: Literal["session.update"]
    event_id: str | None = None
    session: SessionPatch


class ConversationItemCreate(ClientModel):
    type: Literal["conversation.item.create"]
    event_id: str | None = None
    previous_item_id: str | None = None
    item: Item


class ConversationItemDelete(ClientModel):
    type: Literal["conversation.item.delete"]
    event_id: str | None = None
    item_id: str


class ConversationItemRetrieve(ClientModel):
    type: Literal["conversation.item.retrieve"]
    event_id: str | None = None
    item_id: str


class ConversationItemTruncate(ClientModel):
    """Cut an assistant item's audio (and its transcript) to what the user heard, e.g. after barge-in."""

    type: Literal["conversation.item.truncate"]
    event_id: str | None = None
    item_id: str
    content_index: int = Field(0, ge=0)
    audio_end_ms: int = Field(ge=0)


class InputAudioBufferAppend(ClientModel):
    type: Literal["input_audio_buffer.append"]
    event_id: str | None = None
    audio: str  # base64, in the session's input audio format


class InputAudioBufferCommit(ClientModel):
    type: Literal["input_audio_buffer.commit"]
    event_id: str | None = None


class InputAudioBufferClear(ClientModel):
    type: Literal["input_audio_buffer.clear"]
    event_id: str | None = None


class ResponseCreate(ClientModel):
    type: Literal["response.create"]
    event_id: str | None = None
    response: ResponseParams = Field(default_factory=ResponseParams)


class ResponseCancel(ClientModel):
    type: Literal["response.cancel"]
    event_id: str | None = None
    response_id: str | None = None


_ClientEvents = (
    SessionUpdate
    | ConversationItemCreate
    | ConversationItemDelete
    | ConversationItemRetrieve
    | ConversationItemTruncate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ResponseCreate
    | ResponseCancel
)
ClientEvent = Annotated[_ClientEvents, Field(discriminator="type")]


def _by_type(union: Any) -> dict[str, type[ClientModel]]:
    """Each member of a union of event models under the value(s) of its `type` Literal."""
    return {kind: model for model in get_args(union) for kind in get_args(model.model_fields["type"].annotation)}


# The gateway refuses any other type as `unknown_event` before it validates the event itself.
CLIENT_EVENT_MODELS: dict[str, type[ClientModel]] = _by_type(_ClientEvents)
CLIENT_EVENT_TYPES: frozenset[str] = frozenset(CLIENT_EVENT_MODELS)
_client_event_adapter: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)


def parse_client_event(data: dict[str, Any]) -> ClientEvent:
    """Validate one decoded client event; the caller has checked that its type is known."""
    return _client_event_adapter.validate_python(data)
