"""CLIP through open_clip: the model with its own preprocessing, image embeddings, zero-shot tags.

The default is our own small model (`mmstream-clip-tiny`, trained here by `mmstream train clip` on
pictures we generate, shipped as safetensors); any open_clip model loads the same way, by name and
`pretrained` (a path, or a pretrained tag / `hf-hub:` id when downloads are allowed).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import open_clip
import torch
from PIL import Image

from workers.image.bundled import BUNDLED_WEIGHTS, CONFIG_DIR
from workers.image.labels import LabelGroup

__all__ = ["BUNDLED_WEIGHTS", "ClipModel", "Tag", "register_configs"]


@functools.cache
def register_configs() -> None:
    """Make our model configs known to open_clip (once per process)."""
    open_clip.add_model_config(CONFIG_DIR)


@dataclass(frozen=True)
class Tag:
    group: str
    label: str
    score: float


class ClipModel:
    def __init__(self, name: str, pretrained: str | None, groups: tuple[LabelGroup, ...]) -> None:
        register_configs()
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained, weights_only=True)
        self.model = model.eval()
        self.preprocess = preprocess
        self.name = name
        self._tokenizer = open_clip.get_tokenizer(name)
        self._scale = float(self.model.logit_scale.detach().exp())
        self.groups = groups
        self._labels = {g.name: self._label_embeddings(g) for g in groups}
        self.dim = int(next(iter(self._labels.values())).shape[1])

    @torch.inference_mode()
    def _label_embeddings(self, group: LabelGroup) -> torch.Tensor:
        rows = []
        for label in group.labels:
            text = self.model.encode_text(self._tokenizer(group.prompts(label)))
            mean = torch.nn.functional.normalize(text, dim=-1).mean(dim=0)
            rows.append(torch.nn.functional.normalize(mean, dim=-1))
        return torch.stack(rows)

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """The model's own preprocessing (resize, crop, normalise) of one RGB picture."""
        out: torch.Tensor = self.preprocess(image)
        return out

    @torch.inference_mode()
    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Unit-length image embeddings for a batch of preprocessed pictures, in one forward pass."""
        return torch.nn.functional.normalize(self.model.encode_image(batch), dim=-1)

    def tags(self, embedding: torch.Tensor) -> list[Tag]:
        """The most likely label of each group, with its probability within the group."""
        out = []
        for group in self.groups:
            probs = torch.softmax(self._scale * self._labels[group.name] @ embedding, dim=0)
            best = int(torch.argmax(probs))
            out.append(Tag(group.name, group.labels[best], round(float(probs[best]), 3)))
        return out

    def classify(self, embedding: torch.Tensor, group: str) -> str:
        labels = next(g for g in self.groups if g.name == group).labels
        return labels[int(torch.argmax(self._labels[group] @ embedding))]
