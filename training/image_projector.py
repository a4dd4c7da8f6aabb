"""`mmstream train projector --modality image`: CLIP embeddings -> soft tokens the language model reads.

Method: embedding-space distillation. Both models stay frozen. A picture from `synthetic.py` is
embedded by our CLIP; its targets are the language model's own input embeddings (rows of
`token_embd.weight`, read from the GGUF) of the words that describe it, one word per soft token in
a fixed order: colour, shape, count, size, position ("red star two small center"). The decoder
writes each slot's name before its soft token ("colour: <soft>, shape: <soft>, ..."), as the
text tags name theirs. The projector
(LayerNorm, MLP) is trained to reproduce those rows (mean squared error plus cosine distance).

Why not backpropagate through the language model, as LLaVA does? It costs a forward and backward
pass of the LLM per example (hours on two cores) and buys the freedom to put things no word says
into the soft tokens. Here every attribute the questions ask about has a word, and the language
model already reads its own embedding rows as those words (the decoder's equivalence test shows
vectors and ids give the same next token). `mmstream eval` then measures, through the service,
whether the soft tokens answer questions as well as the text tags do. See docs/fusion.md.

Held-out scores: nearest candidate word per slot, and nearest token in the whole vocabulary, on
pictures whose attribute combination never appears in training. Reproducible from the seed.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.config import Settings
from training.frozen import language_model, seeded, tokenizer
from training.synthetic import COLOURS, COUNTS, POSITIONS, SHAPES, SIZES, Scene, dataset
from workers.decoder.token_table import TokenTable
from workers.fusion.bundled import projector_path
from workers.fusion.projector import Projector, ProjectorMeta, save_projector
from workers.image.bundled import BUNDLED_WEIGHTS
from workers.image.clip import ClipModel
from workers.image.labels import DEFAULT_GROUPS

# One soft token per attribute, in reading order, and the words it may say.
# The order is the text tags' order: with "count" first, the 0.5B default model answered "how many"
# right 58% of the time from the very same words, 100% with "colour, shape" first.
SLOTS: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "count": tuple(COUNTS.values()),
    "size": tuple(SIZES),
    "position": tuple(POSITIONS),
}


def slot_words(scene: Scene) -> list[str]:
    return [scene.colour, scene.shape, COUNTS[scene.count], scene.size, scene.position]


@dataclass(frozen=True)
class ProjectorTrainConfig:
    seed: int = 0
    train_images: int = 8_000
    eval_images: int = 1_000
    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    hidden: int = 512
    threads: int = 2


@dataclass(frozen=True)
class ProjectorReport:
    config: dict[str, object]
    device: str
    seconds: float
    final_loss: float
    word_pieces: dict[str, list[str]]
    held_out_word_accuracy: dict[str, float]
    held_out_vocab_top1: float
    sha256: str


class TorchProjector(nn.Module):
    """The training twin of `projector.Projector` (same parameter names and maths)."""

    def __init__(self, encoder_dim: int, hidden: int, k: int, llm_dim: int) -> None:
        super().__init__()
        self.k, self.llm_dim = k, llm_dim
        self.norm = nn.LayerNorm(encoder_dim)
        self.fc1 = nn.Linear(encoder_dim, hidden)
        self.fc2 = nn.Linear(hidden, k * llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.gelu(self.fc1(self.norm(x)), approximate="tanh")
        return self.fc2(h).view(-1, self.k, self.llm_dim)


def train_image_projector(
    config: ProjectorTrainConfig, settings: Settings, out: Path | None = None, log: bool = True
) -> ProjectorReport:
    device = seeded(config.seed, config.threads)
    started = time.monotonic()
    llm, table = language_model(settings)
    out = out or projector_path("image", llm.sha256)  # the bundled one for this language model
    word_ids, pieces = _word_tokens(llm.path)
    clip_pretrained = str(BUNDLED_WEIGHTS) if settings.clip_pretrained == "bundled" else settings.clip_pretrained
    clip = ClipModel(settings.clip_model, clip_pretrained, DEFAULT_GROUPS)
    clip.model.to(device)

    def embed(seed: int, n: int, held_out: bool) -> tuple[torch.Tensor, list[Scene]]:
        pictures = dataset(seed, n, held_out=held_out)
        chunks, scenes = [], []
        while batch := list(itertools.islice(pictures, 256)):
            pixels = torch.stack([clip.pixels(image) for image, _, _ in batch]).to(device)
            chunks.append(clip.embed(pixels).float())
            scenes += [scene for _, scene, _ in batch]
        return torch.cat(chunks), scenes

    def targets(scenes: list[Scene]) -> torch.Tensor:
        ids = [[word_ids[w] for w in slot_words(s)] for s in scenes]
        rows = table.rows([t for row in ids for t in row])
        return torch.from_numpy(rows).view(len(scenes), len(SLOTS), table.width).to(device)

    x_train, train_scenes = embed(config.seed + 10, config.train_images, held_out=False)
    y_train = targets(train_scenes)
    x_eval, eval_scenes = embed(config.seed + 11, config.eval_images, held_out=True)
    if log:
        print(f"embedded {len(x_train)} + {len(x_eval)} pictures in {time.monotonic() - started:.0f} s", flush=True)

    model, loss = _fit(config, x_train, y_train, clip.dim, table.width, log=log, started=started)
    weights = {name: t.detach().cpu().numpy() for name, t in model.state_dict().items()}
    meta = ProjectorMeta(
        modality="image",
        encoder=settings.clip_model,
        encoder_dim=clip.dim,
        llm=llm.path.name,
        llm_sha256=llm.sha256,
        llm_dim=table.width,
        k=len(SLOTS),
        hidden=config.hidden,
        slots=" ".join(SLOTS),
    )
    sha256 = save_projector(out, meta, weights)
    seconds = time.monotonic() - started

    # Scores of the saved file (fp16, numpy inference), as the decoder will use it.
    saved = Projector.load(out)
    predicted = np.stack([saved(e) for e in x_eval.cpu().numpy()])
    report = ProjectorReport(
        config=asdict(config),
        device=device,
        seconds=round(seconds, 1),
        final_loss=round(loss.item(), 4),
        word_pieces=dict(sorted(pieces.items())),
        held_out_word_accuracy=_word_accuracy(predicted, eval_scenes, table, word_ids),
        held_out_vocab_top1=_vocab_top1(predicted[:200], eval_scenes[:200], table, word_ids),
        sha256=sha256,
    )
    out.with_suffix(".json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _word_tokens(llm_path: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Each slot word's token id (its first piece, for a word of several) and its pieces."""
    word_ids: dict[str, int] = {}
    pieces: dict[str, list[str]] = {}
    with tokenizer(llm_path) as vocab:
        for word in sorted({w for words in SLOTS.values() for w in words}):
            ids = vocab.tokenize(" " + word)
            word_ids[word] = ids[0]
            pieces[word] = [vocab.token_text(t) for t in ids]
    return word_ids, pieces


def _fit(
    config: ProjectorTrainConfig,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    encoder_dim: int,
    llm_dim: int,
    *,
    log: bool,
    started: float,
) -> tuple[TorchProjector, torch.Tensor]:
    model = TorchProjector(encoder_dim, config.hidden, len(SLOTS), llm_dim).to(x_train.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    steps = config.epochs * ((len(x_train) + config.batch_size - 1) // config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    scale = float(y_train.pow(2).mean().rsqrt())  # MSE in units of the rows' own size
    generator = torch.Generator().manual_seed(config.seed)
    loss = torch.tensor(0.0)
    for epoch in range(config.epochs):
        order = torch.randperm(len(x_train), generator=generator).to(x_train.device)
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            pred, want = model(x_train[idx]), y_train[idx]
            mse = ((pred - want) * scale).pow(2).mean()
            cosine = 1 - nn.functional.cosine_similarity(pred, want, dim=-1).mean()
            loss = mse + cosine
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if log and (epoch % 10 == 0 or epoch == config.epochs - 1):
            print(f"epoch {epoch:3d}  loss {loss.item():.4f}  {time.monotonic() - started:.0f} s", flush=True)
    return model, loss


def _word_accuracy(
    predicted: np.ndarray, scenes: list[Scene], table: TokenTable, word_ids: dict[str, int]
) -> dict[str, float]:
    """Per slot: how often the nearest (cosine) of the slot's candidate words is the right one."""
    out = {}
    for slot, (name, words) in enumerate(SLOTS.items()):
        rows = _unit(table.rows([word_ids[w] for w in words]))
        guesses = (_unit(predicted[:, slot]) @ rows.T).argmax(axis=1)
        truth = [slot_words(s)[slot] for s in scenes]
        out[name] = round(float(np.mean([words[g] == t for g, t in zip(guesses, truth, strict=True)])), 4)
    return out


def _vocab_top1(predicted: np.ndarray, scenes: list[Scene], table: TokenTable, word_ids: dict[str, int]) -> float:
    """How often the nearest token of the whole vocabulary is the target word, over all slots."""
    flat = _unit(predicted.reshape(-1, predicted.shape[-1]))
    best = np.full(len(flat), -np.inf)
    best_id = np.zeros(len(flat), dtype=np.int64)
    for start in range(0, table.vocab_size, 16_384):
        ids = list(range(start, min(start + 16_384, table.vocab_size)))
        scores = flat @ _unit(table.rows(ids)).T
        top = scores.argmax(axis=1)
        better = scores[np.arange(len(flat)), top] > best
        best[better] = scores[np.arange(len(flat)), top][better]
        best_id[better] = np.asarray(ids)[top[better]]
    want = [word_ids[w] for s in scenes for w in slot_words(s)]
    return round(float(np.mean(best_id == np.asarray(want))), 4)


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
    return out
