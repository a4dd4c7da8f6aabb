"""Typed settings, read once per process from `MMSTREAM_*` environment variables.

Build one `Settings` in `main()` (or the app factory) and pass it down; nothing else in
the project reads `os.environ` for configuration.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.messages import FusionMode

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
WorkerKind = Literal["decode", "audio", "image", "speech"]
WORKER_KINDS: tuple[WorkerKind, ...] = ("decode", "audio", "image", "speech")
# The voice names of OpenAI's API: clients send them, and each speaks with the configured voice.
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)

# The default answers general questions right far more often (docs/eval/qa.md); the small one is for
# tests that only check plumbing, small machines and the lowest latency (README: which to pick).
DEFAULT_DECODER_MODEL = "bundled:qwen2.5-coder-1.5b-instruct-q4_k_m"
SMALL_DECODER_MODEL = "bundled:qwen2.5-coder-0.5b-instruct-q4_k_m"
_QUANT = re.compile(r"[-.](q\d\w*|f16|f32|bf16)$", re.IGNORECASE)


def model_id(decoder_model: str) -> str:
    """The id clients ask for by default: the model's name without its quantisation and extension."""
    name = decoder_model.removeprefix("bundled:").rsplit("/", 1)[-1].removesuffix(".gguf")
    return _QUANT.sub("", name).lower()


class Settings(BaseSettings):
    """Every setting of mmstream. Environment variable = `MMSTREAM_` + field name, upper case."""

    model_config = SettingsConfigDict(env_prefix="MMSTREAM_", extra="ignore", frozen=True)

    # --- Redis: broker, stream bus and session store -------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis used for sessions and streams.")
    broker_url: str | None = Field(None, description="Celery broker; defaults to redis_url.")
    key_prefix: str = Field("mmstream", description="Prefix of every Redis key the service writes.")
    redis_data_dir: Path = Field(
        Path.home() / ".cache" / "mmstream" / "redis",
        description="Where `mmstream up` keeps the data of a Redis it starts itself.",
    )

    # --- Access ------------------------------------------------------------------------------
    api_keys: list[SecretStr] = Field(
        default_factory=list, description="API keys clients must present (JSON list). None: loopback clients only."
    )
    api_keys_file: Path | None = Field(None, description="A file of API keys, one per line.")
    api_key: SecretStr | None = Field(None, description="The key mmstream's own clients (chat, eval, batch) present.")

    def auth_headers(self) -> dict[str, str]:
        """What mmstream's own clients send to be let in."""
        return {} if self.api_key is None else {"Authorization": f"Bearer {self.api_key.get_secret_value()}"}

    # --- Limits per API key (0: none) ----------------------------------------------------------
    limit_sessions_per_key: int = Field(100, ge=0, description="Realtime sessions open at once.")
    limit_requests_per_minute: int = Field(
        1200, ge=0, description="HTTP requests to /v1 and response.create events, per minute."
    )
    limit_audio_seconds_per_minute: float = Field(1800.0, ge=0, description="Seconds of input audio per minute.")
    limit_frames_per_minute: int = Field(1200, ge=0, description="Pictures (camera frames included) per minute.")

    # --- Gateway -----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    served_model_name: str = Field(
        "", description="Model id clients ask for; by default the decoder model's name (qwen2.5-coder-1.5b-instruct)."
    )
    model_aliases: list[str] = Field(
        default_factory=list, description="Other model ids accepted as the served model (JSON list)."
    )
    max_ws_message_bytes: int = Field(1 << 20, ge=1024, description="Largest websocket frame accepted.")
    http_header_timeout_s: float = Field(
        10.0, gt=0, description="Longest a client may take to send a request's headers; a slower one is cut off."
    )
    max_http_header_bytes: int = Field(64 << 10, ge=1024, description="Largest request headers accepted.")
    max_text_chars: int = Field(32_000, ge=1, description="Longest text of one content part.")
    max_instructions_chars: int = Field(16_000, ge=0)
    max_tools_chars: int = Field(
        64_000, ge=256, description="Largest `tools` list of a request or session (its JSON, all tools together)."
    )
    max_conversation_items: int = Field(256, ge=1, description="Items kept per session.")
    session_ttl_s: int = Field(3600, ge=60, description="Idle lifetime of a session's keys in Redis.")
    max_audio_buffer_s: float = Field(300.0, gt=0, description="Longest uncommitted input audio buffer.")

    # --- Decoding ----------------------------------------------------------------------------
    decoder_model: str = Field(
        DEFAULT_DECODER_MODEL,
        description="GGUF file: a path, 'bundled:<name>', or 'hf:<repo>/<file>' (needs allow_downloads).",
    )
    decoder_model_sha256: str | None = Field(None, description="Expected sha256 of a model given by path.")
    decoder_mmproj: str | None = Field(
        None,
        description="The model's llama.cpp multimodal projector (an mmproj GGUF: a path, or 'hf:<repo>/<file>'). "
        "Image workers encode pictures with it and the decoder feeds its embeddings, instead of our CLIP and "
        "projector.",
    )
    decoder_mmproj_sha256: str | None = Field(None, description="Expected sha256 of the mmproj file.")
    encoded_cache_ttl_s: int = Field(
        3600, ge=1, description="How long a picture the mmproj encoded is kept (by content) after its last use."
    )
    encoded_cache_mb: int = Field(256, ge=0, description="Most megabytes of such pictures kept in Redis (0: none).")
    decoder_n_ctx: int = Field(4096, ge=256, description="Context length per sequence, in tokens.")
    decoder_n_batch: int = Field(
        2048,
        ge=8,
        description="Tokens (all sequences' together) one engine step may evaluate: newcomers' prompts "
        "are read together, as llama-server does with its default.",
    )
    decoder_n_ubatch: int = Field(
        512,
        ge=8,
        description="Tokens llama.cpp computes at once within a step (its physical batch; sizes its buffers).",
    )
    decoder_kv_unified: bool = Field(
        True,
        description="One KV cache shared by every sequence (llama.cpp's kv_unified, llama-server's -kvu): a "
        "step's prompts are computed together however long each is, and a prefix copy is bookkeeping. Off: "
        "a cache stream per sequence, computed in micro-batches of equal runs (slower to read uneven prompts).",
    )
    decoder_gather_ms: float = Field(
        4.0,
        ge=0,
        le=50,
        description="After an idle spell, how long the first request waits for more to arrive before the "
        "engine's first step (each arrival restarts it, 50 ms at most): a burst is read in one step.",
    )
    decoder_host_cache_mb: int = Field(
        2048,
        ge=0,
        description="Host memory (MiB) for the KV caches of conversations whose slot went to another, so "
        "their next turn is loaded rather than read again (llama-server's --cache-ram); 0 turns it off.",
    )
    decoder_tool_grammar: bool = Field(
        True,
        description="Hold tool calls to their functions' schemas with a grammar (off only to measure what it adds).",
    )
    decoder_threads: int = Field(2, ge=1, description="llama.cpp threads (generation and prompt).")
    decoder_omp_wait_policy: Literal["passive", "active"] = Field(
        "passive",
        description="OpenMP idle threads sleep (passive) or spin (active). Active is ~1.6x faster on cores of "
        "its own but several times slower when other workers share them.",
    )
    decoder_n_gpu_layers: int = Field(0, ge=-1, description="Layers offloaded to the GPU; -1 means all.")
    decoder_cpu_variant: str = Field(
        "auto",
        pattern=r"^[a-z0-9_.-]+$",
        description="Which of llama.cpp's CPU variants (libggml-cpu-<name>.so) to load: 'auto' picks the best this "
        "CPU and its kernel support; a name such as 'haswell' or 'sse42' pins one.",
    )
    decoder_concurrency: int = Field(
        4, ge=1, description="Responses one decoder process serves at once (continuous batching)."
    )
    max_output_tokens_cap: int = Field(
        2048, ge=1, description="Most tokens one response may generate; 'inf' in a request means this."
    )
    default_instructions: str = Field("You are a helpful, concise assistant.", max_length=16_000)
    default_temperature: float = Field(0.7, ge=0.0, le=2.0)
    default_top_p: float = Field(0.9, gt=0.0, le=1.0)
    decode_time_limit_s: float = Field(300.0, gt=0, description="Longest a response may generate.")
    decode_queue_timeout_s: float = Field(
        300.0, gt=0, description="Longest a response may wait for a decoder before it fails."
    )
    transcript_wait_s: float = Field(
        30.0, gt=0, description="Longest a reply waits for a picture's description or a transcript; then goes on."
    )
    lease_ttl_s: float = Field(5.0, gt=0.5, description="A worker that stops renewing for this long is dead.")
    max_attempts: int = Field(3, ge=1, description="Times a response is started before it fails.")

    # --- Hearing -----------------------------------------------------------------------------
    asr_model: str = Field(
        "bundled:whisper-tiny.en",
        description="CTranslate2 Whisper folder: a path, 'bundled:whisper-tiny.en', 'bundled:whisper-base' or "
        "'hf:<org>/<repo>' (needs allow_downloads).",
    )
    asr_model_sha256: str | None = Field(None, description="Expected folder sha256 of a model given by path.")
    asr_compute_type: Literal["int8", "int8_float32", "float32"] = "int8"
    audio_threads: int = Field(1, ge=1, description="CTranslate2 threads per audio worker process.")
    audio_concurrency: int = Field(1, ge=1, description="Tasks one audio worker process runs at once.")
    max_audio_file_s: float = Field(1800.0, gt=0, description="Longest audio file accepted for transcription.")
    max_upload_bytes: int = Field(25 << 20, ge=1024, description="Largest uploaded file (OpenAI's limit: 25 MB).")
    asr_served_name: str = Field("whisper-tiny.en", description="Transcription model id clients ask for.")
    asr_model_aliases: list[str] = Field(
        default_factory=lambda: ["whisper-1"], description="Other transcription model ids accepted (JSON list)."
    )
    store_encoder_states: bool = Field(True, description="Keep each utterance's Whisper encoder output.")
    turn_model: str = Field(
        "bundled:smart-turn-v3.2",
        description="End-of-turn model of semantic VAD: 'bundled:smart-turn-v3.2', or a Smart Turn v3 .onnx path.",
    )
    turn_model_sha256: str | None = Field(None, description="Expected sha256 of an end-of-turn model given by path.")
    turn_text_model: str = Field(
        "bundled:smollm2-135m-instruct-q4_1",
        description="Semantic VAD's second opinion, from the words: a chat GGUF that scores whether the transcript "
        "so far is a whole message (a path, 'bundled:<name>', 'hf:<repo>/<file>'); '' leaves turns to the sound.",
    )
    turn_text_model_sha256: str | None = Field(None, description="Expected sha256 of a sentence-end model by path.")
    turn_text_threshold: float = Field(
        -3.0,
        le=0,
        description="Semantic VAD ends a turn the end-of-turn model calls done only when the words score at least "
        "this (log10 of the chance the message is complete); below it the turn waits for the eagerness's longest.",
    )
    barge_in_min_speech_ms: int = Field(
        1000,
        ge=0,
        le=5000,
        description="Speech over a spoken reply interrupts it when it lasts this long, or at once with an interrupt "
        "word or two words that are not backchannel words; shorter speech (uh-huh, yeah, okay, a cough) lets the "
        "reply go on. 0: any speech interrupts at once.",
    )
    backchannel_words: list[str] = Field(
        default_factory=lambda: [
            "uh-huh",
            "uh",
            "huh",
            "um",
            "hmm",
            "mm",
            "mhm",
            "mm-hmm",
            "yeah",
            "yes",
            "yep",
            "ok",
            "okay",
            "right",
            "sure",
            "i",
            "see",
            "got",
            "it",
            "cool",
            "nice",
            "great",
            "alright",
            "wow",
            "oh",
            "ah",
            "ha",
        ],
        description="Words that, alone, are a backchannel rather than an interruption (JSON list, lower case).",
    )
    interrupt_words: list[str] = Field(
        default_factory=lambda: ["stop", "wait", "no", "hold", "hey", "sorry", "excuse", "pardon", "actually", "but"],
        description="Words that, heard in speech over a spoken reply, interrupt it at once (JSON list, lower case).",
    )
    turn_threshold: float = Field(
        0.5, gt=0, lt=1, description="Semantic VAD: the end-of-turn probability at which a pause ends the turn."
    )

    # --- Sight -------------------------------------------------------------------------------
    clip_model: str = Field("mmstream-clip-tiny", description="open_clip model name (or our own config).")
    clip_pretrained: str = Field(
        "bundled",
        description="'bundled' (our trained checkpoint), a checkpoint path, or an open_clip pretrained tag / "
        "'hf-hub:' id (needs allow_downloads).",
    )
    clip_pretrained_sha256: str | None = Field(None, description="Expected sha256 of a checkpoint given by path.")
    image_labels_file: Path | None = Field(None, description="JSON label groups for zero-shot tags.")
    image_threads: int = Field(1, ge=1, description="torch threads per image worker process.")
    image_concurrency: int = Field(8, ge=1, description="Pictures one image worker holds at once (its batch).")
    image_batch_size: int = Field(8, ge=1, description="Most pictures in one forward pass.")
    image_batch_wait_ms: float = Field(5.0, ge=0, description="How long a batch waits for more pictures.")
    max_image_bytes: int = Field(10 << 20, ge=1024, description="Largest picture accepted, encoded.")
    max_image_pixels: int = Field(4096 * 4096, ge=1, description="Most pixels a picture may have.")
    frame_duplicate_cosine: float = Field(
        0.985, gt=0, le=1, description="Camera frames this close (CLIP cosine) to the last kept one are dropped."
    )
    allow_remote_media: bool = Field(False, description="Fetch http(s) image URLs (public addresses only).")
    remote_media_timeout_s: float = Field(5.0, gt=0)

    # --- Fusion ------------------------------------------------------------------------------
    fusion_mode: FusionMode = Field(
        "both",
        description="How pictures and speech reach the language model: 'text' (tags, transcripts), 'embed' "
        "(projected soft tokens) or 'both'. Sessions may change it with session.update {fusion}.",
    )
    image_projector: str = Field(
        "bundled",
        description="Image projector: 'bundled' (ours, for the default CLIP and LLM), a .safetensors path, or 'none'.",
    )
    image_projector_sha256: str | None = Field(None, description="Expected sha256 of a projector given by path.")
    audio_projector: str = Field(
        "bundled",
        description="Speech projector (Whisper encoder states to soft tokens): 'bundled', a path, or 'none'.",
    )
    audio_projector_sha256: str | None = Field(None, description="Expected sha256 of a projector given by path.")

    # --- Speech (voice replies) ----------------------------------------------------------------
    tts_voice: str = Field(
        "bundled:en_US-joe-medium",
        description="Piper voice: 'bundled:en_US-joe-medium', or the path of a voice's .onnx file (its .onnx.json "
        "beside it).",
    )
    tts_voice_sha256: str | None = Field(None, description="Expected sha256 of a voice's .onnx given by path.")
    tts_served_name: str = Field("piper", description="Speech model id clients ask for (/v1/audio/speech).")
    tts_model_aliases: list[str] = Field(
        default_factory=lambda: ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"],
        description="Other speech model ids accepted (JSON list).",
    )
    speech_threads: int = Field(1, ge=1, description="onnxruntime threads per speech worker process.")
    speech_concurrency: int = Field(1, ge=1, description="Pieces one speech worker process speaks at once.")
    max_speech_input_chars: int = Field(4096, ge=1, description="Longest /v1/audio/speech input (OpenAI's limit).")
    speech_pieces_ahead: int = Field(
        4, ge=1, description="Pieces of one reply sent to speech workers before the first has been played out."
    )

    # --- Files and batches -------------------------------------------------------------------
    max_batch_file_bytes: int = Field(100 << 20, ge=1024, description="Largest file uploaded to /v1/files.")
    max_batch_lines: int = Field(50_000, ge=1, description="Most requests in one batch input file.")
    files_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="How long uploaded files, batch results and finished batches are kept."
    )
    batch_decoder_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of the live decoders' slots batch requests may hold at once (at least one), so "
        "interactive requests find a free slot.",
    )
    batch_max_attempts: int = Field(3, ge=1, description="Times a batch request that failed transiently is tried.")

    # --- Models ------------------------------------------------------------------------------
    models_dir: Path = Field(Path.home() / ".cache" / "mmstream" / "models")
    wheels_dir: Path = Field(
        Path.home() / ".cache" / "mmstream" / "wheels",
        description="Where scripts/install.sh keeps the wheels that models are read out of (Smart Turn's).",
    )
    allow_downloads: bool = Field(False, description="Let the resolver fetch 'hf:' models from the hub.")

    metrics_port: int = Field(
        0, ge=0, le=65535, description="A worker serves Prometheus metrics on this port (0: not at all)."
    )
    log_level: LogLevel = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _served_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("served_model_name"):
            data = {**data, "served_model_name": model_id(str(data.get("decoder_model") or DEFAULT_DECODER_MODEL))}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def visibility_timeout_s(self) -> int:
        """Broker redelivery delay, the same for every process.

        Above the longest task: a message reserved by a busy worker may wait one task before it starts.
        """
        return int(2 * self.decode_time_limit_s + 60)

    def accepts_model(self, name: str) -> bool:
        return name == self.served_model_name or name in self.model_aliases

    def accepts_speech_model(self, name: str) -> bool:
        return name == self.tts_served_name or name in self.tts_model_aliases

    @property
    def voice_name(self) -> str:
        """The configured voice's own name (en_US-joe-medium): a voice clients may ask for by name."""
        return self.tts_voice.removeprefix("bundled:").rsplit("/", 1)[-1].removesuffix(".onnx")

    def accepts_voice(self, name: str) -> bool:
        return name in OPENAI_VOICES or name == self.voice_name
