"""`mmstream train projector --modality audio`: Whisper encoder states -> soft tokens, by CTC.

Data: sentences about colours, shapes, counts and positions, spoken by espeak-ng in two accents at
several speeds, encoded by the configured Whisper (frozen). Target: the sentence's tokens in the
language model's vocabulary. Each group of `stack` encoder frames becomes one vector; its logits
are its cosine similarity to the embedding rows of the tokens the projector may say (and to a
learned blank), and a CTC loss aligns them with the sentence. The vectors thus learn to point at
the embedding of the token spoken where they are, which the language model reads as that token.

The sentence templates that `mmstream eval` speaks are never trained on (their words are, in
other sentences); held-out scores are token error rates on those sentences.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from shared.config import Settings
from shared.models import resolve_model
from shared.pcm import to_float
from training.frozen import language_model, seeded, tokenizer
from training.speech import speak
from training.synthetic import COLOURS, COUNTS, POSITIONS, SHAPES
from workers.audio.whisper import WhisperASR
from workers.decoder.llama import LlamaModel
from workers.fusion.bundled import projector_path
from workers.fusion.projector import ProjectorMeta, save_projector
from workers.fusion.speech import SpeechProjector

FILL = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "count": tuple(COUNTS.values()),
    "position": tuple(POSITIONS),
}
TRAIN_TEMPLATES = (
    "I like the colour {colour}.",
    "The {shape} is {colour}.",
    "Her favourite {shape} is {colour}.",
    "This is my favourite {shape}.",
    "Is the shape in the picture {colour}?",
    "What colour is the {shape}?",
    "What shape is it?",
    "There are {count} {colour} shapes in this picture.",
    "The {colour} {shape} is on the {position}.",
    "My shape is the {colour} {shape}.",
    "What is in this picture?",
    "Show me the {shape} on the {position}.",
    "I see {count} shapes.",
    "Is this shape a {shape}?",
    "The colour of the {shape} is {colour}.",
    "My favourite thing is the {colour} {shape}.",
)
# What `mmstream eval` says: never trained on.
HELD_OUT_TEMPLATES = (
    "My favourite colour is {colour}.",
    "My favourite shape is the {shape}.",
    "What colour is the shape in this picture?",
    "What shape is in this picture?",
)
VOICES = ("en-us", "en-gb")
SPEEDS = (130, 150, 170)


def sentence(template: str, rng: random.Random) -> str:
    return template.format(**{k: rng.choice(v) for k, v in FILL.items()})


@dataclass(frozen=True)
class SpeechTrainConfig:
    seed: int = 0
    train_utterances: int = 1_500
    eval_utterances: int = 120
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    hidden: int = 1024
    stack: int = 4  # 50 encoder frames/s -> 12.5 vectors/s before the collapse
    threads: int = 2


@dataclass(frozen=True)
class SpeechReport:
    config: dict[str, object]
    device: str
    seconds: float
    final_loss: float
    vocabulary: int
    held_out_token_error_rate: float
    held_out_examples: list[dict[str, str]]
    sha256: str


class TorchSpeechProjector(nn.Module):
    """The training twin of `speech.SpeechProjector` (same parameter names and maths)."""

    rows: torch.Tensor

    def __init__(self, encoder_dim: int, stack: int, hidden: int, llm_dim: int, rows: torch.Tensor) -> None:
        super().__init__()
        self.stack = stack
        self.norm = nn.LayerNorm(encoder_dim * stack)
        self.fc1 = nn.Linear(encoder_dim * stack, hidden)
        self.fc2 = nn.Linear(hidden, llm_dim)
        self.blank = nn.Parameter(torch.randn(llm_dim) * rows.norm(dim=1).mean() / llm_dim**0.5)
        self.register_buffer("rows", rows)  # the vocabulary's embedding rows, frozen

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(batch, frames, encoder_dim) -> (batch, frames // stack, llm_dim)."""
        b, t, d = states.shape
        n = t // self.stack
        x = states[:, : n * self.stack].reshape(b, n, self.stack * d)
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(x)), approximate="tanh"))

    def logits(self, vectors: torch.Tensor, scale: float = 16.0) -> torch.Tensor:
        table = torch.cat([self.blank[None], self.rows])
        return scale * nn.functional.normalize(vectors, dim=-1) @ nn.functional.normalize(table, dim=-1).T


def train_speech_projector(
    config: SpeechTrainConfig, settings: Settings, out: Path | None = None, log: bool = True
) -> SpeechReport:
    rng = random.Random(config.seed)
    device = seeded(config.seed, config.threads)
    started = time.monotonic()
    llm, table = language_model(settings)
    out = out or projector_path("audio", llm.sha256)  # the bundled one for this language model
    asr_model = resolve_model(
        settings.asr_model,
        settings.models_dir,
        allow_downloads=settings.allow_downloads,
        expected_sha256=settings.asr_model_sha256,
    )
    asr = WhisperASR(asr_model.path, threads=config.threads, compute_type=settings.asr_compute_type)

    def utterances(templates: tuple[str, ...], n: int, words: LlamaModel) -> list[tuple[str, np.ndarray, list[int]]]:
        out = []
        for _ in range(n):
            text = sentence(rng.choice(templates), rng)
            pcm = speak(text, rate=16_000, voice=rng.choice(VOICES), wpm=rng.choice(SPEEDS))
            states = asr.encoder_states(to_float(pcm))
            out.append((text, states.astype(np.float32), words.tokenize(text)))
        return out

    with tokenizer(llm.path) as words:
        train = utterances(TRAIN_TEMPLATES, config.train_utterances, words)
        held_out = utterances(HELD_OUT_TEMPLATES, config.eval_utterances, words)
        vocab = sorted({t for _, _, ids in train + held_out for t in ids})
        tokenizer_pieces = {t: words.token_text(t) for t in vocab}
    index = {t: i + 1 for i, t in enumerate(vocab)}  # 0 is the blank
    if log:
        print(f"{len(train)} + {len(held_out)} utterances, {len(vocab)} tokens, {time.monotonic() - started:.0f} s")

    rows = torch.from_numpy(table.rows(vocab)).to(device)
    encoder_dim = int(train[0][1].shape[1])
    model = TorchSpeechProjector(encoder_dim, config.stack, config.hidden, table.width, rows).to(device)
    loss = _fit(model, config, train, index, device, log=log, started=started)

    blank_and_rows = torch.cat([model.blank[None], model.rows]).detach().cpu().numpy()
    weights = {n: t.detach().cpu().numpy() for n, t in model.state_dict().items() if n not in ("rows", "blank")}
    weights["vocab_rows"] = blank_and_rows
    weights["vocab_ids"] = np.asarray([-1, *vocab], dtype=np.float32)  # -1: the blank
    meta = ProjectorMeta(
        modality="audio",
        encoder=asr_model.spec,
        encoder_dim=encoder_dim,
        llm=llm.path.name,
        llm_sha256=llm.sha256,
        llm_dim=table.width,
        k=0,
        hidden=config.hidden,
        slots="spoken tokens, CTC-collapsed",
        stack=config.stack,
    )
    sha256 = save_projector(out, meta, weights)
    seconds = time.monotonic() - started

    saved = SpeechProjector.load(out)
    errors, total = 0, 0
    examples: list[dict[str, str]] = []
    rows_unit = blank_and_rows / np.linalg.norm(blank_and_rows, axis=1, keepdims=True)
    for text, states, ids in held_out:
        soft = saved(states)
        said = [vocab[int(i) - 1] for i in (soft / np.linalg.norm(soft, axis=1, keepdims=True) @ rows_unit.T).argmax(1)]
        errors += _edit_distance(said, ids)
        total += len(ids)
        if len(examples) < 8:
            examples.append({"spoken": text, "nearest tokens": "".join(tokenizer_pieces[t] for t in said)})
    report = SpeechReport(
        config=asdict(config),
        device=device,
        seconds=round(seconds, 1),
        final_loss=round(loss, 4),
        vocabulary=len(vocab),
        held_out_token_error_rate=round(errors / max(total, 1), 4),
        held_out_examples=examples,
        sha256=sha256,
    )
    out.with_suffix(".json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _fit(
    model: TorchSpeechProjector,
    config: SpeechTrainConfig,
    train: list[tuple[str, np.ndarray, list[int]]],
    index: dict[int, int],
    device: str,
    *,
    log: bool,
    started: float,
) -> float:
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    params = [p for n, p in model.named_parameters() if n != "rows"]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    steps = config.epochs * ((len(train) + config.batch_size - 1) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(config.seed)
    loss = torch.tensor(0.0)
    for epoch in range(config.epochs):
        order = torch.randperm(len(train), generator=generator).tolist()
        for i in range(0, len(order), config.batch_size):
            batch = [train[j] for j in order[i : i + config.batch_size]]
            frames = max(len(s) for _, s, _ in batch)
            states = torch.zeros(len(batch), frames, batch[0][1].shape[1])
            for b, (_, s, _) in enumerate(batch):
                states[b, : len(s)] = torch.from_numpy(s)
            log_probs = model.logits(model(states.to(device))).log_softmax(-1).transpose(0, 1)
            targets = torch.tensor([index[t] for _, _, ids in batch for t in ids])
            lengths = torch.tensor([len(s) // config.stack for _, s, _ in batch])
            target_lengths = torch.tensor([len(ids) for _, _, ids in batch])
            loss = ctc(log_probs, targets, lengths, target_lengths)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if log and (epoch % 5 == 0 or epoch == config.epochs - 1):
            print(f"epoch {epoch:3d}  CTC loss {loss.item():.4f}  {time.monotonic() - started:.0f} s", flush=True)
    return float(loss.item())


def _edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]
