"""`mmstream train clip`: train our small CLIP on generated pictures, report held-out zero-shot accuracy.

Contrastive training (open_clip's `ClipLoss`) of the `mmstream-clip-tiny` config from scratch on
captioned pictures from `synthetic.py`, drawn fresh for every batch (a fixed set of pictures gets
memorised: seen combinations then score far better than unseen ones). Zero-shot accuracy is measured on pictures whose
colour-shape pair never appears in training, with the same label prompts the image worker uses.
The result is reproducible from the seed (deterministic algorithms, fixed thread count).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file

from training.synthetic import Scene, dataset
from workers.image.clip import BUNDLED_WEIGHTS, ClipModel, register_configs
from workers.image.labels import DEFAULT_GROUPS

MODEL = "mmstream-clip-tiny"


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    steps: int = 3000
    batch_size: int = 128
    eval_images: int = 1_000
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    threads: int = 2


@dataclass(frozen=True)
class TrainReport:
    config: dict[str, object]
    seconds: float
    final_loss: float
    held_out_accuracy: dict[str, float]
    seen_accuracy: dict[str, float]


def train_clip(config: TrainConfig, out: Path = BUNDLED_WEIGHTS, log: bool = True) -> TrainReport:
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    register_configs()
    model, _, preprocess = open_clip.create_model_and_transforms(MODEL)
    tokenizer = open_clip.get_tokenizer(MODEL)

    def tensors(pictures: Iterator[tuple[Any, Scene, str]], n: int) -> tuple[torch.Tensor, torch.Tensor, list[Scene]]:
        images, captions, scenes = [], [], []
        for image, scene, caption in itertools.islice(pictures, n):
            images.append(preprocess(image))
            captions.append(caption)
            scenes.append(scene)
        return torch.stack(images), tokenizer(captions), scenes

    started = time.monotonic()
    stream = dataset(config.seed, 2**62, held_out=False)
    loss_fn = open_clip.ClipLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (
            min(1.0, (s + 1) / config.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / config.steps))
        ),
    )
    model.train()
    loss = torch.tensor(0.0)
    for step in range(config.steps):
        images, texts, _ = tensors(stream, config.batch_size)
        image_features, text_features, scale = model(images, texts)
        loss = loss_fn(image_features, text_features, scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if log and (step % 100 == 0 or step == config.steps - 1):
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.monotonic() - started:.0f} s", flush=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out), metadata={"model": MODEL, "seed": str(config.seed), "steps": str(config.steps)})
    seconds = time.monotonic() - started
    trained = ClipModel(MODEL, str(out), DEFAULT_GROUPS)
    report = TrainReport(
        config=asdict(config),
        seconds=round(seconds, 1),
        final_loss=round(loss.item(), 4),
        held_out_accuracy=_accuracy(
            trained, *tensors(dataset(config.seed + 1, config.eval_images, held_out=True), config.eval_images)[::2]
        ),
        seen_accuracy=_accuracy(
            trained, *tensors(dataset(config.seed + 2, config.eval_images, held_out=False), config.eval_images)[::2]
        ),
    )
    out.with_suffix(".json").write_text(json.dumps(asdict(report), indent=2) + "\n")
    return report


def _accuracy(model: ClipModel, images: torch.Tensor, scenes: list[Scene]) -> dict[str, float]:
    """Zero-shot accuracy per label group, with the prompts the image worker uses."""
    embeddings = torch.cat([model.embed(images[i : i + 256]) for i in range(0, len(images), 256)])
    out = {}
    for group in ("shape", "colour"):
        right = sum(model.classify(e, group) == getattr(s, group) for e, s in zip(embeddings, scenes, strict=True))
        out[group] = round(right / len(scenes), 4)
    return out
