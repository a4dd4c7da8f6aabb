"""The session object: what `session.update` may change, and the session as the server reports it."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Discriminator, Field, Tag, TypeAdapter

from shared.messages.base import ClientModel, StrictModel

MaxTokens = int | Literal["inf"]
# How pictures and speech reach the language model: as text (tags, transcripts), as soft tokens
# (projected embeddings), or both. An mmstream extension of the session object.
FusionMode = Literal["text", "embed", "both"]


class PcmFormat(ClientModel):
    """PCM16 little-endian mono. The Realtime API fixes 24 kHz; other common rates work here too."""

    type: Literal["audio/pcm"] = "audio/pcm"
    rate: Literal[8000, 16000, 22050, 24000, 32000, 44100, 48000] = 24000


class PcmuFormat(ClientModel):
    type: Literal["audio/pcmu"]  # G.711 µ-law, 8 kHz


class PcmaFormat(ClientModel):
    type: Literal["audio/pcma"]  # G.711 A-law, 8 kHz


AudioFormat = Annotated[PcmFormat | PcmuFormat | PcmaFormat, Field(discriminator="type")]
_BETA_FORMATS: dict[str, dict[str, Any]] = {
    "pcm16": {"type": "audio/pcm", "rate": 24000},
    "g711_ulaw": {"type": "audio/pcmu"},
    "g711_alaw": {"type": "audio/pcma"},
}


class ServerVad(ClientModel):
    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Silero speech probability that counts as speech.")
    prefix_padding_ms: int = Field(300, ge=0, le=5000, description="Audio kept before the detected speech.")
    silence_duration_ms: int = Field(500, ge=100, le=10_000, description="Silence that ends the turn.")
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = Field(
        None, ge=5000, le=30_000, description="With no speech this long after a reply has played, prompt the user."
    )


# Semantic VAD's longest wait after speech stops, when the end-of-turn model says the speaker is not done
# (OpenAI documents 8 s, 4 s and 2 s for low, medium and high; auto is medium).
SEMANTIC_MAX_WAIT_MS: dict[str, int] = {"low": 8000, "medium": 4000, "high": 2000, "auto": 4000}


class SemanticVad(ClientModel):
    """Turns end when the end-of-turn model (on the audio worker) says the speaker is done, at a pause
    Silero VAD finds; else at most `SEMANTIC_MAX_WAIT_MS[eagerness]` after the speech stopped."""

    type: Literal["semantic_vad"]
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True

    # What Silero VAD needs, fixed (the API has no fields for them with semantic VAD).
    threshold: ClassVar[float] = 0.5
    prefix_padding_ms: ClassVar[int] = 300

    @property
    def silence_duration_ms(self) -> int:
        return SEMANTIC_MAX_WAIT_MS[self.eagerness]


def _vad_type(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "semantic_vad" if kind == "semantic_vad" else "server_vad"  # a missing type is server VAD


TurnDetection = Annotated[
    Annotated[ServerVad, Tag("server_vad")] | Annotated[SemanticVad, Tag("semantic_vad")], Discriminator(_vad_type)
]


class InputTranscription(ClientModel):
    model: str | None = None
    language: str | None = Field(None, max_length=16)
    prompt: str | None = Field(None, max_length=2000)


class AudioInput(ClientModel):
    format: AudioFormat = Field(default_factory=PcmFormat)
    transcription: InputTranscription | None = Field(default_factory=InputTranscription)
    turn_detection: TurnDetection | None = Field(default_factory=ServerVad)


class AudioOutput(ClientModel):
    """How replies are spoken when `output_modalities` is `["audio"]`. Every voice name OpenAI documents
    is accepted and speaks with the configured voice (a speech worker has one); so does its own name."""

    format: AudioFormat = Field(default_factory=PcmFormat)
    voice: str = Field("alloy", min_length=1, max_length=64)
    speed: float = Field(1.0, ge=0.25, le=1.5)


class SessionAudio(ClientModel):
    input: AudioInput = Field(default_factory=AudioInput)
    output: AudioOutput = Field(default_factory=AudioOutput)


# `["text"]` or `["audio"]` (speech with its transcript), as in the GA API; the beta's `["text", "audio"]`
# means audio.
OutputModality = Literal["text", "audio"]


def output_modalities(given: list[OutputModality]) -> list[OutputModality]:
    return ["audio"] if "audio" in given else ["text"]


class RealtimeTool(ClientModel):
    """A function the model may call (the Realtime API's flat shape of a tool)."""

    type: Literal["function"] = "function"
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


class NamedFunction(ClientModel):
    type: Literal["function"]
    name: str


RealtimeToolChoice = Literal["auto", "none", "required"] | NamedFunction


def tool_choice_name(choice: RealtimeToolChoice) -> str:
    """The choice as the decoder takes it: a mode, or the one function's name."""
    return choice.name if isinstance(choice, NamedFunction) else choice


class SessionPatch(ClientModel):
    """The fields of `session.update` we honour; others are accepted and ignored.

    Inside `audio.input`, a field that is present replaces the current value (null switches
    `turn_detection` off); absent fields stay as they are. The beta names `input_audio_format`,
    `turn_detection` and `input_audio_transcription` are accepted too.
    """

    type: Literal["realtime"] | None = None
    model: str | None = None
    instructions: str | None = None
    output_modalities: list[OutputModality] | None = Field(None, min_length=1, max_length=2)
    modalities: list[OutputModality] | None = Field(None, min_length=1, max_length=2)  # beta name
    max_output_tokens: Annotated[int, Field(ge=1)] | Literal["inf"] | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    audio: SessionAudio | None = None
    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    turn_detection: TurnDetection | None = None
    input_audio_transcription: InputTranscription | None = None
    voice: str | None = Field(None, min_length=1, max_length=64)  # beta name
    output_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None  # beta name
    fusion: FusionMode | None = None
    tools: list[RealtimeTool] | None = None
    tool_choice: RealtimeToolChoice | None = None

    def modalities_change(self) -> list[OutputModality] | None:
        given = self.output_modalities or self.modalities
        return None if given is None else output_modalities(given)

    def audio_output_changes(self) -> dict[str, Any]:
        """The `audio.output` fields this patch sets, beta names folded in."""
        changes: dict[str, Any] = {}
        if self.output_audio_format is not None:
            changes["format"] = TypeAdapter(AudioFormat).validate_python(_BETA_FORMATS[self.output_audio_format])
        if self.voice is not None:
            changes["voice"] = self.voice
        if self.audio is not None and "output" in self.audio.model_fields_set:
            given = self.audio.output
            changes.update({name: getattr(given, name) for name in given.model_fields_set})
        return changes

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


class Session(StrictModel):
    """The session object as the server reports it."""

    type: Literal["realtime"] = "realtime"
    object: Literal["realtime.session"] = "realtime.session"
    id: str
    model: str
    output_modalities: list[OutputModality] = ["text"]
    instructions: str = ""
    max_output_tokens: MaxTokens = "inf"
    temperature: float
    audio: SessionAudio = Field(default_factory=SessionAudio)
    fusion: FusionMode = "text"
    tools: list[RealtimeTool] = Field(default_factory=list)
    tool_choice: RealtimeToolChoice = "auto"

    def merged(self, patch: SessionPatch) -> Session:
        keep = {"instructions", "max_output_tokens", "temperature", "fusion", "tools", "tool_choice"}
        update: dict[str, Any] = {k: getattr(patch, k) for k in keep if getattr(patch, k) is not None}
        if (modalities := patch.modalities_change()) is not None:
            update["output_modalities"] = modalities
        heard, spoken = patch.audio_input_changes(), patch.audio_output_changes()
        if heard or spoken:
            update["audio"] = SessionAudio(
                input=self.audio.input.model_copy(update=heard), output=self.audio.output.model_copy(update=spoken)
            )
        return self.model_copy(update=update)
