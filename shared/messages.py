"""Every message that crosses a process boundary, in one module.

Three families, each a pydantic model tagged by `type`:
- Realtime client events (websocket, client -> gateway), parsed through `parse_client_event`.
- Realtime server events (gateway -> client): a compatible subset of the OpenAI Realtime API (GA names).
- Internal messages (`v: 1`): Celery task payloads and the entries of a response's Redis Stream.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

# ---------------------------------------------------------------------------------------------
# Identifiers
# ---------------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def new_event_id() -> str:
    return new_id("event")


class _Wire(BaseModel):
    """Client input: unknown fields are ignored so that newer clients keep working."""

    model_config = ConfigDict(extra="ignore")


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------------------------
# Conversation items and their content
# ---------------------------------------------------------------------------------------------

ItemStatus = Literal["completed", "incomplete", "in_progress"]


class InputText(_Wire):
    type: Literal["input_text"]
    text: str


class OutputText(_Wire):
    # "text" is what beta clients send for assistant content; it is stored as "output_text".
    type: Literal["output_text", "text"]
    text: str


ContentPart = Annotated[InputText | OutputText, Field(discriminator="type")]


class MessageItem(_Wire):
    """A conversation message. Clients may omit id, object and status; the gateway fills them in.

    Content may be empty only while the server is still writing an assistant reply.
    """

    id: str | None = Field(None, max_length=64)
    type: Literal["message"] = "message"
    object: Literal["realtime.item"] = "realtime.item"
    status: ItemStatus = "completed"
    role: Literal["user", "assistant", "system"]
    content: list[ContentPart] = Field(default_factory=list, max_length=64)

    def text(self) -> str:
        return "".join(part.text for part in self.content)


# ---------------------------------------------------------------------------------------------
# Session configuration
# ---------------------------------------------------------------------------------------------

MaxTokens = int | Literal["inf"]


class SessionPatch(_Wire):
    """The fields of `session.update` we honour; others are accepted and ignored."""

    type: Literal["realtime"] | None = None
    model: str | None = None
    instructions: str | None = None
    output_modalities: list[Literal["text"]] | None = Field(None, min_length=1)
    max_output_tokens: Annotated[int, Field(ge=1)] | Literal["inf"] | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)


class Session(_Out):
    """The session object as the server reports it."""

    type: Literal["realtime"] = "realtime"
    object: Literal["realtime.session"] = "realtime.session"
    id: str
    model: str
    output_modalities: list[Literal["text"]] = ["text"]
    instructions: str = ""
    max_output_tokens: MaxTokens = "inf"
    temperature: float

    def merged(self, patch: SessionPatch) -> Session:
        update = patch.model_dump(exclude_none=True, exclude={"type", "model"})
        return self.model_copy(update=update)


# ---------------------------------------------------------------------------------------------
# Realtime client events
# ---------------------------------------------------------------------------------------------


class ResponseParams(_Wire):
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | Literal["inf"] | None = None
    output_modalities: list[Literal["text"]] | None = Field(None, min_length=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    conversation: Literal["auto", "none"] = "auto"
    metadata: dict[str, str] | None = None


class SessionUpdate(_Wire):
    type: Literal["session.update"]
    event_id: str | None = None
    session: SessionPatch


class ConversationItemCreate(_Wire):
    type: Literal["conversation.item.create"]
    event_id: str | None = None
    previous_item_id: str | None = None
    item: MessageItem


class ConversationItemDelete(_Wire):
    type: Literal["conversation.item.delete"]
    event_id: str | None = None
    item_id: str


class ConversationItemRetrieve(_Wire):
    type: Literal["conversation.item.retrieve"]
    event_id: str | None = None
    item_id: str


class ResponseCreate(_Wire):
    type: Literal["response.create"]
    event_id: str | None = None
    response: ResponseParams = Field(default_factory=ResponseParams)


class ResponseCancel(_Wire):
    type: Literal["response.cancel"]
    event_id: str | None = None
    response_id: str | None = None


ClientEvent = Annotated[
    SessionUpdate
    | ConversationItemCreate
    | ConversationItemDelete
    | ConversationItemRetrieve
    | ResponseCreate
    | ResponseCancel,
    Field(discriminator="type"),
]
CLIENT_EVENT_TYPES: frozenset[str] = frozenset(
    {
        "session.update",
        "conversation.item.create",
        "conversation.item.delete",
        "conversation.item.retrieve",
        "response.create",
        "response.cancel",
    }
)
_client_event_adapter: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)


def parse_client_event(data: dict[str, Any]) -> ClientEvent:
    """Validate one decoded client event; the caller has checked that its type is known."""
    return _client_event_adapter.validate_python(data)


# ---------------------------------------------------------------------------------------------
# Realtime server events
# ---------------------------------------------------------------------------------------------

ResponseStatus = Literal["in_progress", "completed", "cancelled", "incomplete", "failed"]
FinalStatus = Literal["completed", "cancelled", "incomplete", "failed"]


class InputTokenDetails(_Out):
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0
    cached_tokens: int = 0


class OutputTokenDetails(_Out):
    text_tokens: int = 0
    audio_tokens: int = 0


class Usage(_Out):
    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_token_details: InputTokenDetails = Field(default_factory=InputTokenDetails)
    output_token_details: OutputTokenDetails = Field(default_factory=OutputTokenDetails)


class StatusError(_Out):
    type: str
    code: str
    message: str


class StatusDetails(_Out):
    type: FinalStatus
    reason: str | None = None
    error: StatusError | None = None


class Response(_Out):
    id: str
    object: Literal["realtime.response"] = "realtime.response"
    status: ResponseStatus = "in_progress"
    status_details: StatusDetails | None = None
    output: list[MessageItem] = Field(default_factory=list)
    conversation_id: str | None = None
    output_modalities: list[Literal["text"]] = ["text"]
    max_output_tokens: MaxTokens = "inf"
    metadata: dict[str, str] | None = None
    usage: Usage | None = None


class ErrorDetail(_Out):
    type: str
    code: str
    message: str
    param: str | None = None
    event_id: str | None = None


class _ServerEvent(_Out):
    event_id: str = Field(default_factory=new_event_id)


class ErrorEvent(_ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail


class SessionCreated(_ServerEvent):
    type: Literal["session.created"] = "session.created"
    session: Session


class SessionUpdated(_ServerEvent):
    type: Literal["session.updated"] = "session.updated"
    session: Session


class ConversationItemAdded(_ServerEvent):
    type: Literal["conversation.item.added"] = "conversation.item.added"
    previous_item_id: str | None
    item: MessageItem


class ConversationItemDone(_ServerEvent):
    type: Literal["conversation.item.done"] = "conversation.item.done"
    previous_item_id: str | None
    item: MessageItem


class ConversationItemCreated(_ServerEvent):
    """Beta name of `conversation.item.added`, sent too for older clients."""

    type: Literal["conversation.item.created"] = "conversation.item.created"
    previous_item_id: str | None
    item: MessageItem


class ConversationItemDeleted(_ServerEvent):
    type: Literal["conversation.item.deleted"] = "conversation.item.deleted"
    item_id: str


class ConversationItemRetrieved(_ServerEvent):
    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: MessageItem


class ResponseCreated(_ServerEvent):
    type: Literal["response.created"] = "response.created"
    response: Response


class ResponseDone(_ServerEvent):
    type: Literal["response.done"] = "response.done"
    response: Response


class ResponseOutputItemAdded(_ServerEvent):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    response_id: str
    output_index: int
    item: MessageItem


class ResponseOutputItemDone(_ServerEvent):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int
    item: MessageItem


class TextPart(_Out):
    type: Literal["text"] = "text"
    text: str = ""


class ResponseContentPartAdded(_ServerEvent):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: TextPart


class ResponseContentPartDone(_ServerEvent):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: TextPart


class ResponseOutputTextDelta(_ServerEvent):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputTextDone(_ServerEvent):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    text: str


ServerEvent = (
    ErrorEvent
    | SessionCreated
    | SessionUpdated
    | ConversationItemAdded
    | ConversationItemDone
    | ConversationItemCreated
    | ConversationItemDeleted
    | ConversationItemRetrieved
    | ResponseCreated
    | ResponseDone
    | ResponseOutputItemAdded
    | ResponseOutputItemDone
    | ResponseContentPartAdded
    | ResponseContentPartDone
    | ResponseOutputTextDelta
    | ResponseOutputTextDone
)

# ---------------------------------------------------------------------------------------------
# Internal messages: Celery payloads and response stream entries
# ---------------------------------------------------------------------------------------------


class GenerateRequest(_Out):
    """Payload of `decode.generate`: keys into Redis and sampling settings, never the media itself."""

    v: Literal[1] = 1
    response_id: str
    session_id: str
    item_ids: list[str]
    instructions: str = ""
    temperature: float = Field(ge=0.0, le=2.0)
    top_p: float = Field(gt=0.0, le=1.0)
    max_output_tokens: int = Field(ge=1)
    seed: int | None = None


class TokenDelta(_Out):
    """Some generated text; `token_ids` let a worker that takes over continue exactly here."""

    v: Literal[1] = 1
    type: Literal["delta"] = "delta"
    text: str
    token_ids: list[int]


class TokenUsage(_Out):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


class ResponseFinal(_Out):
    """The last entry of every response stream."""

    v: Literal[1] = 1
    type: Literal["final"] = "final"
    status: FinalStatus
    reason: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)


StreamEvent = Annotated[TokenDelta | ResponseFinal, Field(discriminator="type")]
stream_event_adapter: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)
