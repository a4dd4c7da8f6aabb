"""The request body of `POST /v1/chat/completions` (OpenAI's field names), also a batch line's body."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_MESSAGES = 256
_MAX_STOPS = 4


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


class CalledFunction(_Body):
    name: str = Field(min_length=1, max_length=64)
    arguments: str = Field(max_length=1 << 16)  # JSON text


class ToolCall(_Body):
    """A call an assistant message made, as the reply gave it (history sent back)."""

    id: str = Field(min_length=1, max_length=64)
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    # None only for an assistant message that makes tool calls.
    content: str | Annotated[list[Part], Field(min_length=1)] | None = None
    tool_calls: list[ToolCall] | None = Field(None, max_length=128)  # assistant
    tool_call_id: str | None = Field(None, min_length=1, max_length=64)  # tool


class FunctionDef(_Body):
    name: str
    description: str = ""
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ChatTool(_Body):
    """OpenAI's `tools` entry: a function the model may call."""

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Body):
    name: str


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class AudioOutputParams(_Body):
    """How to speak the reply when `modalities` holds "audio" (OpenAI's `audio` parameter)."""

    voice: str = Field(min_length=1, max_length=64)
    format: Literal["wav", "mp3", "flac", "opus", "aac", "pcm16"]


class JsonSchema(_Body):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Body):
    """OpenAI's `response_format`: plain text, any JSON object, or JSON valid by a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class ChatCompletionRequest(_Body):
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | Annotated[list[str], Field(max_length=_MAX_STOPS)] | None = None
    seed: int | None = None
    n: Literal[1] | None = Field(None, description="Choices per request: only one.")
    modalities: list[Literal["text", "audio"]] | None = Field(None, min_length=1, max_length=2)
    audio: AudioOutputParams | None = None
    response_format: ResponseFormat | None = None
    tools: list[ChatTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool = True

    def speaks(self) -> bool:
        """Whether the reply is to be spoken too (`modalities` holds "audio")."""
        return bool(self.modalities and "audio" in self.modalities)

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
