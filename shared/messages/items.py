"""Conversation items and their content parts, as clients send them and the server keeps them.

An item is a message (`MessageItem`), a tool call the assistant made (`FunctionCallItem`) or the
result the client sends back for it (`FunctionCallOutputItem`): the Realtime API's three kinds. `Item`
is their union, read through `item_adapter`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, field_validator

from shared.messages.base import ClientModel, new_id

ItemStatus = Literal["completed", "incomplete", "in_progress"]


class InputText(ClientModel):
    type: Literal["input_text"]
    text: str


class OutputText(ClientModel):
    # "text" is what beta clients send for assistant content; it is stored as "output_text".
    type: Literal["output_text", "text"]
    text: str


class OutputAudio(ClientModel):
    """A spoken reply: its transcript is what the model said (trimmed by `conversation.item.truncate` to
    what the user heard). "audio" is the beta name, stored as "output_audio". The audio itself went to
    the client as it was made and is not kept."""

    type: Literal["output_audio", "audio"]
    transcript: str = ""
    audio: str | None = None


class InputAudio(ClientModel):
    """Speech in a user message. `audio` (base64, in the session's input format) is only ever sent by a
    client creating an item; the server keeps the audio in Redis and fills in `transcript`."""

    type: Literal["input_audio"]
    audio: str | None = None
    transcript: str | None = None


class InputImage(ClientModel):
    """A picture in a user message: `image_url` is a data URL (or, where the operator allows, an http(s)
    URL) sent by the client and not kept; the server fills in `description` from the image worker's tags."""

    type: Literal["input_image"]
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] = "auto"
    description: str | None = None


ContentPart = Annotated[InputText | OutputText | OutputAudio | InputAudio | InputImage, Field(discriminator="type")]


def _new_item_id(value: Any) -> Any:
    return new_id("item") if value is None else value  # an explicit null, as an omitted id


class MessageItem(ClientModel):
    """A conversation message. Clients may omit id (a new one is made), object and status.

    Content may be empty only while the server is still writing an assistant reply.
    """

    id: str = Field(default_factory=lambda: new_id("item"), min_length=1, max_length=64)
    type: Literal["message"] = "message"
    object: Literal["realtime.item"] = "realtime.item"
    status: ItemStatus = "completed"
    role: Literal["user", "assistant", "system"]
    content: list[ContentPart] = Field(default_factory=list, max_length=64)

    _id_or_new = field_validator("id", mode="before")(_new_item_id)

    def text(self) -> str:
        """The message as text: typed text, transcripts of its speech, descriptions of its pictures."""
        return "".join(part_text(p) for p in self.content)

    def pending_media(self) -> bool:
        """True while some speech has no transcript or some picture no description yet."""
        return any(
            (isinstance(p, InputAudio) and p.transcript is None)
            or (isinstance(p, InputImage) and p.description is None)
            for p in self.content
        )

    def images_only(self) -> bool:
        return bool(self.content) and all(isinstance(p, InputImage) for p in self.content)


class FunctionCallItem(ClientModel):
    """A tool call the assistant made: `arguments` is the JSON text of the call's arguments."""

    id: str = Field(default_factory=lambda: new_id("item"), min_length=1, max_length=64)
    type: Literal["function_call"] = "function_call"
    object: Literal["realtime.item"] = "realtime.item"
    status: ItemStatus = "completed"
    call_id: str = Field(default_factory=lambda: new_id("call"), min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)
    arguments: str = ""

    _id_or_new = field_validator("id", mode="before")(_new_item_id)

    def pending_media(self) -> bool:
        return False


class FunctionCallOutputItem(ClientModel):
    """What the client's tool returned for the call `call_id` (any text; JSON by convention)."""

    id: str = Field(default_factory=lambda: new_id("item"), min_length=1, max_length=64)
    type: Literal["function_call_output"] = "function_call_output"
    object: Literal["realtime.item"] = "realtime.item"
    status: ItemStatus = "completed"
    call_id: str = Field(min_length=1, max_length=64)
    output: str

    _id_or_new = field_validator("id", mode="before")(_new_item_id)

    def pending_media(self) -> bool:
        return False


Item = Annotated[MessageItem | FunctionCallItem | FunctionCallOutputItem, Field(discriminator="type")]
item_adapter: TypeAdapter[MessageItem | FunctionCallItem | FunctionCallOutputItem] = TypeAdapter(Item)


def part_text(part: InputText | OutputText | OutputAudio | InputAudio | InputImage) -> str:
    if isinstance(part, InputAudio | OutputAudio):
        return part.transcript or ""
    if isinstance(part, InputImage):
        return f"[Picture: {part.description or 'could not be read'}]\n"
    return part.text
