"""The engine tests' model and how they read a job's events to the end."""

from __future__ import annotations

from shared.config import Settings
from shared.models import resolve_model
from workers.decoder.engine import Done, Job, Token
from workers.decoder.llama import ContextConfig, LlamaModel


def open_model(*, n_ctx_per_seq: int, n_seq: int, n_batch: int, kv_unified: bool = True) -> LlamaModel:
    """The configured decoder model (the small one in tests), on two threads, on the CPU."""
    s = Settings()
    path = resolve_model(s.decoder_model, s.models_dir).path
    config = ContextConfig(
        n_ctx_per_seq=n_ctx_per_seq, n_seq=n_seq, n_batch=n_batch, n_threads=2, n_gpu_layers=0, kv_unified=kv_unified
    )
    return LlamaModel(path, config)


def collect(job: Job, timeout: float = 120) -> tuple[str, Done]:
    """The job's whole text and its final event."""
    text = []
    while True:
        event = job.events.get(timeout=timeout)
        if isinstance(event, Done):
            return "".join(text), event
        assert isinstance(event, Token)
        text.append(event.text)
