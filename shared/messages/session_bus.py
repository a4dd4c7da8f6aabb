"""A session's two live streams between the gateway and the workers (`v: 1`): its input audio log
(gateway -> audio workers, in arrival order) and the workers' events about its items (-> gateway)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from shared.errors import ErrorCode
from shared.messages.base import StrictModel

# --- The input audio log: gateway -> audio workers, in arrival order ---------------------------


class AudioAppend(StrictModel):
    """Samples appended to the input buffer; the PCM travels beside this header as raw bytes."""

    v: Literal[1] = 1
    type: Literal["append"] = "append"
    sample_rate: Literal[16000] = 16000
    dtype: Literal["int16"] = "int16"
    samples: int = Field(ge=1)
    item_id: str | None = None  # the item this audio becomes if the client commits it


class AudioCommit(StrictModel):
    """The buffer so far becomes user item `item_id` (already in the conversation if `item_added`)."""

    v: Literal[1] = 1
    type: Literal["commit"] = "commit"
    item_id: str
    item_added: bool = False


class AudioClear(StrictModel):
    v: Literal[1] = 1
    type: Literal["clear"] = "clear"


AudioLogEntry = Annotated[AudioAppend | AudioCommit | AudioClear, Field(discriminator="type")]
audio_log_adapter: TypeAdapter[AudioLogEntry] = TypeAdapter(AudioLogEntry)


# --- Events from workers about the session's items: audio and image workers -> gateway ----------


class SpeechStarted(StrictModel):
    v: Literal[1] = 1
    type: Literal["speech_started"] = "speech_started"
    item_id: str
    audio_start_ms: int


class SpeechStopped(StrictModel):
    v: Literal[1] = 1
    type: Literal["speech_stopped"] = "speech_stopped"
    item_id: str
    audio_end_ms: int


class AudioCommitted(StrictModel):
    """An utterance became a conversation item (by server VAD, or the client's commit)."""

    v: Literal[1] = 1
    type: Literal["committed"] = "committed"
    item_id: str
    previous_item_id: str | None
    by_vad: bool


class TranscriptDelta(StrictModel):
    v: Literal[1] = 1
    type: Literal["transcript_delta"] = "transcript_delta"
    item_id: str
    delta: str


class TranscriptDone(StrictModel):
    v: Literal[1] = 1
    type: Literal["transcript_done"] = "transcript_done"
    item_id: str
    transcript: str
    duration_s: float


class TranscriptFailed(StrictModel):
    v: Literal[1] = 1
    type: Literal["transcript_failed"] = "transcript_failed"
    item_id: str
    code: ErrorCode
    message: str


class ImageTag(StrictModel):
    group: str
    label: str
    score: float


class ImageDescribed(StrictModel):
    v: Literal[1] = 1
    type: Literal["image_described"] = "image_described"
    item_id: str
    content_index: int
    description: str
    tags: list[ImageTag]


class ImageDropped(StrictModel):
    v: Literal[1] = 1
    type: Literal["image_dropped"] = "image_dropped"
    item_id: str
    reason: Literal["stale", "duplicate"]
    kept_item_id: str | None = None


class ImageFailed(StrictModel):
    v: Literal[1] = 1
    type: Literal["image_failed"] = "image_failed"
    item_id: str
    content_index: int
    code: ErrorCode
    message: str


SessionEvent = Annotated[
    SpeechStarted
    | SpeechStopped
    | AudioCommitted
    | TranscriptDelta
    | TranscriptDone
    | TranscriptFailed
    | ImageDescribed
    | ImageDropped
    | ImageFailed,
    Field(discriminator="type"),
]
session_event_adapter: TypeAdapter[SessionEvent] = TypeAdapter(SessionEvent)
