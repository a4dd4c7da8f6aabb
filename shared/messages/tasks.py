"""Celery task payloads (`v: 1`): keys into Redis and settings, never the media itself."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.messages.base import StrictModel
from shared.messages.session import FusionMode

# Interactive work (a person waiting) goes first; batch work fills the gaps. An mmstream extension.
Priority = Literal["interactive", "batch"]


class OutputFormat(StrictModel):
    """What a reply must be: any JSON value's text (`json_object`), or JSON valid by `json_schema`. The decoder
    generates it under a grammar made from it (llama.cpp's grammar sampler), so it always parses."""

    type: Literal["json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class FunctionTool(StrictModel):
    """A function the model may call: its name, what it does, and its arguments' JSON schema."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


# "auto": the model chooses; "none": no call; "required": at least one call; else the one function to call.
ToolChoice = Literal["auto", "none", "required"] | str


class GenerateRequest(StrictModel):
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
    fusion: FusionMode = "text"
    priority: Priority = "interactive"
    # Fail with `media_unavailable` instead of answering without a picture or speech that was never
    # described (an encoder died): batch lines are retried, a person gets the best answer now.
    require_media: bool = False
    output_format: OutputFormat | None = None
    tools: list[FunctionTool] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True

    def offered_tools(self) -> list[FunctionTool]:
        """The tools the model may call: none with `tool_choice: "none"` (they are left out of the prompt too)."""
        return [] if self.tool_choice == "none" else self.tools


class TranscribeRequest(StrictModel):
    """Payload of `audio.transcribe`: a whole clip stored at `blob_key`, transcribed offline.

    The result goes to the job stream of `job_id` (HTTP transcriptions), or becomes the transcript
    of conversation item `item_id` of `session_id` (an item created with its audio).
    """

    v: Literal[1] = 1
    blob_key: str
    encoding: Literal["file", "pcm16"]  # a media file (any container PyAV reads) or 16 kHz PCM16
    job_id: str | None = None
    session_id: str | None = None
    item_id: str | None = None
    language: str | None = None
    prompt: str | None = None
    temperature: float = Field(0.0, ge=0.0, le=1.0)  # 0: greedy, with the fallback OpenAI documents
    word_timestamps: bool = False


class DescribeImageRequest(StrictModel):
    """Payload of `image.describe`: one picture of a conversation item, stored at `blob_key`."""

    v: Literal[1] = 1
    session_id: str
    item_id: str
    content_index: int
    blob_key: str
    frame: bool  # a camera frame: may be dropped when stale or a near-duplicate


class AudioStreamRequest(StrictModel):
    """Payload of `audio.stream`: process whatever the session's input log holds."""

    v: Literal[1] = 1
    session_id: str


# How a speech worker writes audio: PCM16 at `rate`, or G.711 µ-law / A-law (8 kHz by definition).
SpeechEncoding = Literal["pcm16", "pcmu", "pcma"]


class SynthesizeRequest(StrictModel):
    """Payload of `speech.synthesize`: one speakable piece of a reply (or of /v1/audio/speech input).

    The audio goes to the job stream of `job_id` as `AudioChunk`s in `encoding` at `rate`, resampled
    once from the voice's own rate.
    """

    v: Literal[1] = 1
    job_id: str
    text: str = Field(min_length=1, max_length=4096)
    speed: float = Field(1.0, ge=0.25, le=4.0)  # OpenAI's range; > 1 speaks faster
    encoding: SpeechEncoding = "pcm16"
    rate: int = Field(24_000, ge=8000, le=48_000)
