"""What a decoder worker process does with a `decode.generate` task.

Claim the response, build the prompt from the conversation in Redis, hand a job to the engine and
let the relay forward its tokens to the response's stream (`workers/decoder/relay.py`, one thread
for all the process's responses). The model and engine are loaded once per process, on first use
or at warm-up.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

import redis

from shared import streams
from shared.config import Settings
from shared.messages import (
    GenerateRequest,
    Item,
    ResponseFinal,
)
from shared.metrics import DECODER_ACTIVE
from shared.models import ResolvedModel, resolve_decoder_models
from shared.response_state import ResponseStore
from shared.sessions import load_items
from workers.base import ModelService
from workers.decoder.engine import Engine, Job
from workers.decoder.grammar import PARAM_SCHEMA, PARAM_TOOLS, BadFormat, Grammar, reply_grammar
from workers.decoder.llama import ContextConfig, LlamaModel
from workers.decoder.prompt import ChatTemplate, SoftInputs, build_prompt
from workers.decoder.relay import Relay
from workers.decoder.selftest import PROVEN, probe
from workers.fusion.inputs import Projectors, load_projectors, soft_inputs
from workers.presence import Presence

log = logging.getLogger(__name__)

_RENEW_S = 1.0
# The gateway gives media up after `transcript_wait_s`; this worker waits a little longer.
_MEDIA_WAIT_MARGIN_S = 5.0
# Largest grammar a request's schemas may make (the gateway bounds the schemas; this bounds what they become).
_MAX_GRAMMAR_CHARS = 256_000
# Room kept for the reply when the conversation is trimmed to fit the context.
_MIN_REPLY_TOKENS = 256


@dataclass(frozen=True)
class _Loaded:
    model_file: ResolvedModel
    model: LlamaModel
    template: ChatTemplate
    engine: Engine
    projectors: Projectors


class DecoderService(ModelService[_Loaded]):
    what = "decoder model"

    def __init__(self, settings: Settings, client: redis.Redis, presence: Presence) -> None:
        super().__init__(settings, client, presence)
        self._store = ResponseStore(
            client, self._keys, lease_ms=int(settings.lease_ttl_s * 1000), ttl_s=settings.session_ttl_s
        )
        self._stopping = threading.Event()
        self._relay = Relay(self._store, self._stopping, lease_s=settings.lease_ttl_s)

    # --- lifecycle ------------------------------------------------------------------------------

    def _identity(self, models: _Loaded) -> dict[str, Any]:
        resolved = models.model_file
        image, audio = models.projectors.image, models.projectors.audio
        return {
            "model": resolved.spec,
            "sha256": resolved.sha256,
            "path": str(resolved.path),
            "cpu_backend": models.model.backends.cpu_variant,
            "cpu_features": " ".join(models.model.backends.cpu_features),
            "devices": list(models.model.backends.devices),
            "image_projector": models.projectors.mmproj
            or (None if image is None else f"{image.meta.encoder} -> k={image.meta.k}"),
            "audio_projector": None if audio is None else f"{audio.meta.encoder} -> 1 per {audio.meta.stack} frames",
        }

    def shutdown(self) -> None:
        """Stop taking tokens; running responses are released for another worker to continue."""
        self._stopping.set()
        if (loaded := self._models) is not None:
            loaded.engine.stop()
        self._relay.stop()

    def _build(self) -> _Loaded:
        s = self._settings
        resolved, mmproj = resolve_decoder_models(s)
        # In a child first: a library this CPU cannot run kills the child, and the next best variant
        # is tried; this worker says why when none runs.
        proven = probe(resolved.path, threads=s.decoder_threads, cpu_variant=s.decoder_cpu_variant, cache=PROVEN)
        passed_over = cast(dict[str, str], proven.get("passed_over") or {})
        for variant, how in passed_over.items():
            log.warning("llama.cpp CPU variant %s %s in the self-test; passed over", variant, how)
        config = ContextConfig(
            n_ctx_per_seq=s.decoder_n_ctx,
            n_seq=s.decoder_concurrency,
            n_batch=s.decoder_n_batch,
            n_ubatch=s.decoder_n_ubatch,
            kv_unified=s.decoder_kv_unified,
            n_threads=s.decoder_threads,
            n_gpu_layers=s.decoder_n_gpu_layers,
            cpu_variant=str(proven["cpu_variant"]),
        )
        model = LlamaModel(resolved.path, config)
        template = ChatTemplate(
            model.meta("tokenizer.chat_template"),
            bos_token=model.special_token("bos"),
            eos_token=model.special_token("eos"),
        )
        log.info("decoder model %s, sha256 %s", resolved.path.name, resolved.sha256[:12])
        if mmproj is not None:  # the image workers encode with it; the decoder needs only its id
            log.info("multimodal projector %s, sha256 %s", mmproj.path.name, mmproj.sha256[:12])
        projectors = load_projectors(
            s,
            llm_sha256=resolved.sha256,
            llm_dim=model.n_embd,
            mmproj_sha256=mmproj.sha256 if mmproj else None,
            input_scale=model.input_scale,
            n_ubatch=model.n_ubatch,
        )
        engine = Engine(
            model,
            gather_s=s.decoder_gather_ms / 1000,
            host_cache_bytes=s.decoder_host_cache_mb << 20,
            on_events=self._relay.wake,
        )
        return _Loaded(resolved, model, template, engine, projectors)

    # --- one task -------------------------------------------------------------------------------

    def generate(self, request: GenerateRequest) -> None:
        rid = request.response_id
        owner = f"{self._presence_name()}/{secrets.token_hex(4)}"
        claim = self._store.claim(rid, owner, self._settings.max_attempts)
        if claim != "ok":
            log.info("response %s not started here: %s", rid, claim)
            return
        try:
            final = self._generate_claimed(request, owner)
        except BadFormat as exc:  # the request's response_format: the client hears which part
            final = ResponseFinal(
                status="failed", error_code="invalid_value", error_message=str(exc), error_param=exc.param
            )
        except Exception:
            log.exception("response %s failed", rid)
            final = ResponseFinal(
                status="failed",
                error_code="server_error",
                error_message="The decoder had an error; it has been logged.",
            )
        if final is not None:
            self._store.finish(rid, owner, final)

    def _generate_claimed(self, request: GenerateRequest, owner: str) -> ResponseFinal | None:
        rid = request.response_id
        if reason := self._store.cancel_reason(rid):
            return ResponseFinal(status="cancelled", reason=reason)
        loaded = self._load()
        items = self._wait_for_media(request, owner)
        if items is None:
            return None  # lost the lease while waiting
        if (refusal := self._refusal(request, items)) is not None:
            return refusal
        budget = loaded.model.n_ctx_per_seq - min(request.max_output_tokens, _MIN_REPLY_TOKENS)
        soft: SoftInputs = {}
        if request.fusion != "text":
            soft = soft_inputs(self._r, self._keys, request.session_id, items, loaded.projectors)
        prompt = build_prompt(
            loaded.template,
            loaded.model.tokenize,
            items,
            request.instructions,
            budget,
            mode=request.fusion,
            soft=soft,
            tools=request.offered_tools(),
        )
        if prompt is None:
            return ResponseFinal(status="incomplete", reason="context_length_exceeded")
        resume, _ = self._store.generated_so_far(rid)
        if resume:
            log.info("response %s: continuing after %d tokens of an earlier attempt", rid, len(resume))
        remaining = request.max_output_tokens - len(resume)
        if remaining <= 0:
            return ResponseFinal(status="incomplete", reason="max_output_tokens")
        job = Job(
            prompt=prompt.tokens,
            resume=resume,
            vectors=prompt.vectors,
            both_ways=prompt.both_ways,
            grammar=_grammar(request, loaded.model, tools=self._settings.decoder_tool_grammar),
            max_new_tokens=remaining,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed if request.seed is not None else secrets.randbits(32),
            deadline=time.monotonic() + self._settings.decode_time_limit_s,
            background=request.priority == "batch",
        )
        loaded.engine.submit(job)
        DECODER_ACTIVE.inc()
        try:
            return self._relay.follow(rid, owner, job)
        finally:
            DECODER_ACTIVE.dec()

    def _refusal(self, request: GenerateRequest, items: list[Item]) -> ResponseFinal | None:
        """Why not to answer after all: cancelled while waiting, or media required and missing."""
        if reason := self._store.cancel_reason(request.response_id):
            return ResponseFinal(status="cancelled", reason=reason)
        if request.require_media and any(item.pending_media() for item in items):
            return ResponseFinal(
                status="failed",
                error_code="media_unavailable",
                error_message="A picture or a recording was not described in time; try again.",
            )
        return None

    def _wait_for_media(self, request: GenerateRequest, owner: str) -> list[Item] | None:
        """Speech and pictures reach the prompt as text: wait until the media workers wrote it.

        Sleeps on the session's event stream, where every transcript, description and media failure
        is announced, and keeps the lease alive meanwhile. The gateway following the response sends
        lost media tasks again and gives media up after `transcript_wait_s` (shared/media_tasks.py);
        this wait ends a little later in any case (no gateway is following), or when the response is
        cancelled; media still missing then count as empty.
        """
        rid, sid = request.response_id, request.session_id
        events = self._keys.session_events(sid)
        # A batch line's media are never given up by the gateway: it fails here, and is tried again.
        margin = 0.0 if request.require_media else _MEDIA_WAIT_MARGIN_S
        deadline = time.monotonic() + self._settings.transcript_wait_s + margin
        last = streams.last_id(self._r, events)
        while True:
            items = load_items(self._r, self._keys, sid, request.item_ids)
            if not any(item.pending_media() for item in items):
                return items
            if time.monotonic() > deadline or self._store.cancel_reason(rid) or self._stopping.is_set():
                return items
            if not self._store.renew(rid, owner):
                return None
            last = streams.wait(self._r, events, last, block_ms=int(_RENEW_S * 1000))

    def _presence_name(self) -> str:
        return self._presence.name


def _grammar(request: GenerateRequest, model: LlamaModel, *, tools: bool) -> Grammar | None:
    """The grammar the reply must follow, checked by llama.cpp; BadFormat when it cannot be made."""
    grammar = reply_grammar(request, tools=tools)
    if grammar is None:
        return None
    param = PARAM_TOOLS if request.offered_tools() else PARAM_SCHEMA
    if len(grammar.text) > _MAX_GRAMMAR_CHARS:  # llama.cpp parses it per sequence: keep that cheap
        raise BadFormat(f"The schema makes a grammar of more than {_MAX_GRAMMAR_CHARS} characters.", param)
    if (why := model.grammar_error(grammar)) is not None:
        raise BadFormat(f"The schema cannot be used: {why}.", param)
    return grammar
