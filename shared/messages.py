"""Every message that crosses a process boundary, in one module.

Four families of pydantic models:
- Realtime client events (websocket, client -> gateway), parsed through `parse_client_event`.
- Realtime server events (gateway -> client): a compatible subset of the OpenAI Realtime API (GA names).
- Internal messages (`v: 1`): Celery task payloads and the entries of a response's Redis Stream.
- HTTP objects of the Files and Batch APIs (OpenAI's shapes), also read by `mmstream batch`.
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


class InputAudio(_Wire):
    """Speech in a user message. `audio` (base64, in the session's input format) is only ever sent by a
    client creating an item; the server keeps the audio in Redis and fills in `transcript`."""

    type: Literal["input_audio"]
    audio: str | None = None
    transcript: str | None = None


class InputImage(_Wire):
    """A picture in a user message: `image_url` is a data URL (or, where the operator allows, an http(s)
    URL) sent by the client and not kept; the server fills in `description` from the image worker's tags."""

    type: Literal["input_image"]
    image_url: str | None = None
    detail: Literal["auto", "low", "high"] = "auto"
    description: str | None = None


ContentPart = Annotated[InputText | OutputText | InputAudio | InputImage, Field(discriminator="type")]


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


def part_text(part: InputText | OutputText | InputAudio | InputImage) -> str:
    if isinstance(part, InputAudio):
        return part.transcript or ""
    if isinstance(part, InputImage):
        return f"[Picture: {part.description or 'could not be read'}]\n"
    return part.text


# ---------------------------------------------------------------------------------------------
# Session configuration
# ---------------------------------------------------------------------------------------------

MaxTokens = int | Literal["inf"]
# How pictures and speech reach the language model: as text (tags, transcripts), as soft tokens
# (projected embeddings), or both. An mmstream extension of the session object.
FusionMode = Literal["text", "embed", "both"]
# Interactive work (a person waiting) goes first; batch work fills the gaps. An mmstream extension.
Priority = Literal["interactive", "batch"]


class PcmFormat(_Wire):
    """PCM16 little-endian mono. The Realtime API fixes 24 kHz; other common rates work here too."""

    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[8000, 16000, 22050, 24000, 32000, 44100, 48000] = 24000


class PcmuFormat(_Wire):
    type: Literal["audio/pcmu"]  # G.711 µ-law, 8 kHz


class PcmaFormat(_Wire):
    type: Literal["audio/pcma"]  # G.711 A-law, 8 kHz


AudioFormat = Annotated[PcmFormat | PcmuFormat | PcmaFormat, Field(discriminator="type")]
_BETA_FORMATS: dict[str, dict[str, Any]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}


class ServerVad(_Wire):
    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Silero speech probability that counts as speech.")
    prefix_padding_ms: int = Field(300, ge=0, le=5000, description="Audio kept before the detected speech.")
    silence_duration_ms: int = Field(500, ge=100, le=10_000, description="Silence that ends the turn.")
    create_response: bool = True
    interrupt_response: bool = True


class InputTranscription(_Wire):
    model: str | None = None
    language: str | None = Field(None, max_length=16)
    prompt: str | None = Field(None, max_length=2000)


class AudioInput(_Wire):
    format: AudioFormat = Field(default_factory=PcmFormat)
    transcription: InputTranscription | None = Field(default_factory=InputTranscription)
    turn_detection: ServerVad | None = Field(default_factory=ServerVad)


class SessionAudio(_Wire):
    input: AudioInput = Field(default_factory=AudioInput)


class SessionPatch(_Wire):
    """The fields of `session.update` we honour; others are accepted and ignored.

    Inside `audio.input`, a field that is present replaces the current value (null switches
    `turn_detection` off); absent fields stay as they are. The beta names `input_audio_format`,
    `turn_detection` and `input_audio_transcription` are accepted too.
    """

    type: Literal["realtime"] | None = None
    model: str | None = None
    instructions: str | None = None
    output_modalities: list[Literal["text"]] | None = Field(None, min_length=1)
    max_output_tokens: Annotated[int, Field(ge=1)] | Literal["inf"] | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    audio: SessionAudio | None = None
    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    turn_detection: ServerVad | None = None
    input_audio_transcription: InputTranscription | None = None
    fusion: FusionMode | None = None

    def audio_input_changes(self) -> dict[str, Any]:
        """The `audio.input` fields this patch sets, beta names folded in."""
        changes: dict[str, Any] = {}
        if self.input_audio_format is not None:
            changes["format"] = TypeAdapter(AudioFormat).validate_python(_BETA_FORMATS[self.input_audio_format])
        for beta in ("turn_detection", "input_audio_transcription"):
            if beta in self.model_fields_set:
                changes[beta.removeprefix("input_audio_")] = getattr(self, beta)
        if self.audio is not None and "input" in self.audio.model_fields_set:
            given = self.audio.input
            changes.update({name: getattr(given, name) for name in given.model_fields_set})
        return changes


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
    audio: SessionAudio = Field(default_factory=SessionAudio)
    fusion: FusionMode = "text"

    def merged(self, patch: SessionPatch) -> Session:
        keep = {"instructions", "output_modalities", "max_output_tokens", "temperature", "fusion"}
        update: dict[str, Any] = {k: v for k, v in patch.model_dump(include=keep).items() if v is not None}
        if changes := patch.audio_input_changes():
            update["audio"] = SessionAudio(input=self.audio.input.model_copy(update=changes))
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


class InputAudioBufferAppend(_Wire):
    type: Literal["input_audio_buffer.append"]
    event_id: str | None = None
    audio: str  # base64, in the session's input audio format


class InputAudioBufferCommit(_Wire):
    type: Literal["input_audio_buffer.commit"]
    event_id: str | None = None


class InputAudioBufferClear(_Wire):
    type: Literal["input_audio_buffer.clear"]
    event_id: str | None = None


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
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
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
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
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


class RateLimit(_Out):
    name: Literal["requests", "audio_seconds", "frames"]
    limit: float
    remaining: float
    reset_seconds: float


class RateLimitsUpdated(_ServerEvent):
    type: Literal["rate_limits.updated"] = "rate_limits.updated"
    rate_limits: list[RateLimit]


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


class InputAudioBufferCommitted(_ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    previous_item_id: str | None
    item_id: str


class InputAudioBufferCleared(_ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class InputAudioBufferSpeechStarted(_ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class InputAudioBufferSpeechStopped(_ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class TranscriptionUsage(_Out):
    type: Literal["duration"] = "duration"
    seconds: float


class InputAudioTranscriptionDelta(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int = 0
    delta: str


class InputAudioTranscriptionCompleted(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: TranscriptionUsage


class InputAudioTranscriptionFailed(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed"
    )
    item_id: str
    content_index: int = 0
    error: ErrorDetail


class ConversationItemInputImageDropped(_ServerEvent):
    """Not in the OpenAI API: a camera frame was not processed (`stale`: a newer frame came first;
    `duplicate`: it shows what `kept_item_id` already shows). `conversation.item.deleted` follows."""

    type: Literal["conversation.item.input_image.dropped"] = "conversation.item.input_image.dropped"
    item_id: str
    reason: Literal["stale", "duplicate"]
    kept_item_id: str | None = None


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
    | InputAudioBufferCommitted
    | InputAudioBufferCleared
    | InputAudioBufferSpeechStarted
    | InputAudioBufferSpeechStopped
    | InputAudioTranscriptionDelta
    | InputAudioTranscriptionCompleted
    | InputAudioTranscriptionFailed
    | ConversationItemInputImageDropped
    | RateLimitsUpdated
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
    fusion: FusionMode = "text"
    priority: Priority = "interactive"
    # Fail with `media_unavailable` instead of answering without a picture or speech that was never
    # described (an encoder died): batch lines are retried, a person gets the best answer now.
    require_media: bool = False


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


class TranscribeRequest(_Out):
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
    word_timestamps: bool = False


class TranscriptWord(_Out):
    word: str
    start: float
    end: float


class TranscriptSegment(_Out):
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


class TranscriptionFinal(_Out):
    """The last entry of a transcription job's stream."""

    v: Literal[1] = 1
    type: Literal["transcription_final"] = "transcription_final"
    status: FinalStatus
    text: str = ""
    language: str = "en"
    duration: float = 0.0
    error_code: str | None = None
    error_message: str | None = None


StreamEvent = Annotated[
    TokenDelta | ResponseFinal | TranscriptSegment | TranscriptionFinal, Field(discriminator="type")
]
FinalEvent = ResponseFinal | TranscriptionFinal
stream_event_adapter: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)


# --- A session's input audio log: gateway -> audio workers, in arrival order -------------------


class AudioAppend(_Out):
    """Samples appended to the input buffer; the PCM travels beside this header as raw bytes."""

    v: Literal[1] = 1
    type: Literal["append"] = "append"
    sample_rate: Literal[16000] = 16000
    dtype: Literal["int16"] = "int16"
    samples: int = Field(ge=1)
    item_id: str | None = None  # the item this audio becomes if the client commits it


class AudioCommit(_Out):
    """The buffer so far becomes user item `item_id` (already in the conversation if `item_added`)."""

    v: Literal[1] = 1
    type: Literal["commit"] = "commit"
    item_id: str
    item_added: bool = False


class AudioClear(_Out):
    v: Literal[1] = 1
    type: Literal["clear"] = "clear"


AudioLogEntry = Annotated[AudioAppend | AudioCommit | AudioClear, Field(discriminator="type")]
audio_log_adapter: TypeAdapter[AudioLogEntry] = TypeAdapter(AudioLogEntry)


# --- A session's events from workers: audio workers -> gateway ---------------------------------


class SpeechStarted(_Out):
    v: Literal[1] = 1
    type: Literal["speech_started"] = "speech_started"
    item_id: str
    audio_start_ms: int


class SpeechStopped(_Out):
    v: Literal[1] = 1
    type: Literal["speech_stopped"] = "speech_stopped"
    item_id: str
    audio_end_ms: int


class AudioCommitted(_Out):
    """An utterance became a conversation item (by server VAD, or the client's commit)."""

    v: Literal[1] = 1
    type: Literal["committed"] = "committed"
    item_id: str
    previous_item_id: str | None
    by_vad: bool


class TranscriptDelta(_Out):
    v: Literal[1] = 1
    type: Literal["transcript_delta"] = "transcript_delta"
    item_id: str
    delta: str


class TranscriptDone(_Out):
    v: Literal[1] = 1
    type: Literal["transcript_done"] = "transcript_done"
    item_id: str
    transcript: str
    duration_s: float


class TranscriptFailed(_Out):
    v: Literal[1] = 1
    type: Literal["transcript_failed"] = "transcript_failed"
    item_id: str
    code: str
    message: str


class ImageTag(_Out):
    group: str
    label: str
    score: float


class ImageDescribed(_Out):
    v: Literal[1] = 1
    type: Literal["image_described"] = "image_described"
    item_id: str
    content_index: int
    description: str
    tags: list[ImageTag]


class ImageDropped(_Out):
    v: Literal[1] = 1
    type: Literal["image_dropped"] = "image_dropped"
    item_id: str
    reason: Literal["stale", "duplicate"]
    kept_item_id: str | None = None


class ImageFailed(_Out):
    v: Literal[1] = 1
    type: Literal["image_failed"] = "image_failed"
    item_id: str
    content_index: int
    code: str
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


class EncoderStates(_Out):
    """Header of an utterance's Whisper encoder output, stored beside its raw bytes for fusion."""

    v: Literal[1] = 1
    model: str
    dtype: Literal["float16", "float32"]
    shape: list[int]  # [frames, width]
    frames_per_second: float


class ImageEmbedding(_Out):
    """Header of a picture's CLIP embedding, stored beside its raw bytes."""

    v: Literal[1] = 1
    model: str
    dtype: Literal["float32"] = "float32"
    shape: list[int]


class DescribeImageRequest(_Out):
    """Payload of `image.describe`: one picture of a conversation item, stored at `blob_key`."""

    v: Literal[1] = 1
    session_id: str
    item_id: str
    content_index: int
    blob_key: str
    frame: bool  # a camera frame: may be dropped when stale or a near-duplicate


class AudioStreamRequest(_Out):
    """Payload of `audio.stream`: process whatever the session's input log holds."""

    v: Literal[1] = 1
    session_id: str


# ---------------------------------------------------------------------------------------------
# HTTP: files and batches (OpenAI's shapes)
# ---------------------------------------------------------------------------------------------

FilePurpose = Literal["batch", "batch_output"]
BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
BatchEndpoint = Literal["/v1/chat/completions", "/v1/audio/transcriptions"]
BATCH_ENDS: tuple[BatchStatus, ...] = ("failed", "completed", "expired", "cancelled")


class FileObject(_Out):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None = None
    filename: str
    purpose: FilePurpose
    status: Literal["processed"] = "processed"


class BatchRequestCounts(_Out):
    total: int = 0
    completed: int = 0
    failed: int = 0


class BatchError(_Out):
    code: str
    message: str
    param: str | None = None
    line: int | None = None


class BatchErrors(_Out):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchObject(_Out):
    id: str
    object: Literal["batch"] = "batch"
    endpoint: BatchEndpoint
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts = Field(default_factory=BatchRequestCounts)
    metadata: dict[str, str] | None = None


class BatchLineResponse(_Out):
    status_code: int
    request_id: str
    body: dict[str, Any]


class BatchLineError(_Out):
    code: str
    message: str


class BatchOutputLine(_Out):
    """One line of a batch's output or error file, keyed by the request's `custom_id`."""

    id: str
    custom_id: str | None
    response: BatchLineResponse | None = None
    error: BatchLineError | None = None
