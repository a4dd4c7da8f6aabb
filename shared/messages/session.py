"""The session object: what `session.update` may change, and the session as the server reports it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

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


class InputTranscription(ClientModel):
    model: str | None = None
    language: str | None = Field(None, max_length=16)
    prompt: str | None = Field(None, max_length=2000)


class AudioInput(ClientModel):
    format: AudioFormat = Field(default_factory=PcmFormat)
    transcription: InputTranscription | None = Field(default_factory=InputTranscription)
    turn_detection: ServerVad | None = Field(default_factory=ServerVad)


class SessionAudio(ClientModel):
    input: AudioInput = Field(default_factory=AudioInput)


class SessionPatch(ClientModel):
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


class Session(StrictModel):
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
