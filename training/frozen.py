"""What both projector trainers share: a seeded start, and the frozen language model's pieces."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from shared.config import Settings
from shared.models import ResolvedModel, resolve_model
from workers.decoder.llama import ContextConfig, LlamaModel
from workers.decoder.token_table import TokenTable


def seeded(seed: int, threads: int) -> str:
    """Seed Python and torch, fix torch's thread count; the device to train on."""
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    return "cuda" if torch.cuda.is_available() else "cpu"


def language_model(settings: Settings) -> tuple[ResolvedModel, TokenTable]:
    """The configured decoder model (sha256-checked as the decoder does) and its token-embedding rows."""
    llm = resolve_model(
        settings.decoder_model,
        settings.models_dir,
        allow_downloads=settings.allow_downloads,
        expected_sha256=settings.decoder_model_sha256,
    )
    return llm, TokenTable(llm.path)


@contextmanager
def tokenizer(path: Path) -> Iterator[LlamaModel]:
    """The model with a tiny context, for its vocabulary only."""
    model = LlamaModel(path, ContextConfig(n_ctx_per_seq=256, n_seq=1, n_batch=32, n_threads=1, n_gpu_layers=0))
    try:
        yield model
    finally:
        model.close()
