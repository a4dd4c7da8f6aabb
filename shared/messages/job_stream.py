"""The entries of a job's Redis Stream (`v: 1`): a response's tokens, a transcription's segments, a
spoken piece's audio, and the final entry that ends each."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from shared.errors import ErrorCode
from shared.messages.base import FinalStatus, StrictModel


class TokenDelta(StrictModel):
    """Some generated text; `token_ids` let a worker that takes over continue exactly here."""

    v: Literal[1] = 1
    type: Literal["delta"] = "delta"
    text: str
    token_ids: list[int]


class TokenUsage(StrictModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


class ResponseFinal(StrictModel):
    """The last entry of every response stream."""

    v: Literal[1] = 1
    type: Literal["final"] = "final"
    status: FinalStatus
    reason: str | None = None
    error_code: ErrorCode | None = None
    error_message: str | None = None
    error_param: str | None = None  # the request's parameter at fault, for a refusal
    usage: TokenUsage = Field(default_factory=TokenUsage)


class AudioChunk(StrictModel):
    """Some synthesized speech of one piece, already in the format its request asked for."""

    v: Literal[1] = 1
    type: Literal["audio"] = "audio"
    audio: str  # base64
    samples: int = Field(ge=0)  # at the request's rate: what the chunk lasts


class TranscriptWord(StrictModel):
    word: str
    start: float
    end: float


class TranscriptSegment(StrictModel):
    v: Literal[1] = 1
    type: Literal["segment"] = "segment"
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[TranscriptWord] | None = None


class TranscriptionFinal(StrictModel):
    """The last entry of a transcription job's stream."""

    v: Literal[1] = 1
    type: Literal["transcription_final"] = "transcription_final"
    status: FinalStatus
    text: str = ""
    language: str = "en"
    duration: float = 0.0
    error_code: ErrorCode | None = None
    error_message: str | None = None


StreamEvent = Annotated[
    TokenDelta | ResponseFinal | TranscriptSegment | TranscriptionFinal | AudioChunk, Field(discriminator="type")
]
FinalEvent = ResponseFinal | TranscriptionFinal
stream_event_adapter: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)
