"""A projector: an encoder embedding in, `k` vectors in the language model's input space out.

Inference is a two-layer MLP in numpy, so the decoder needs no torch. The weights and a metadata
header live in one safetensors file; the header names the encoder, the language model (with its
file's sha256) and the shapes, so a projector is only ever used with the models it was trained
for. Training is in `training.image_projector`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from safetensors import safe_open
from safetensors.numpy import save_file

Modality = Literal["image", "audio"]
FORMAT = "mmstream-projector/1"
Floats = npt.NDArray[np.float32]


class ProjectorMismatch(ValueError):
    """The projector was trained for other models than the ones loaded."""


@dataclass(frozen=True)
class ProjectorMeta:
    modality: Modality
    encoder: str  # e.g. the open_clip model name
    encoder_dim: int
    llm: str  # the language model file's name, for people; llm_sha256 is what is checked
    llm_sha256: str
    llm_dim: int
    k: int  # soft tokens per input (0: as many as the input needs)
    hidden: int
    slots: str = ""  # what each soft token was trained to say, for people
    stack: int = 1  # encoder frames per soft token (speech)
    format: str = FORMAT

    def check(self, *, modality: Modality, llm_sha256: str, llm_dim: int) -> None:
        if self.format != FORMAT:
            raise ProjectorMismatch(f"unknown projector format {self.format!r} (expected {FORMAT})")
        if self.modality != modality:
            raise ProjectorMismatch(f"this is a {self.modality} projector, not an {modality} one")
        if self.llm_dim != llm_dim or self.llm_sha256 != llm_sha256:
            raise ProjectorMismatch(
                f"the projector was trained for {self.llm} (width {self.llm_dim}, sha256 {self.llm_sha256[:12]}), "
                f"but the decoder loaded a model of width {llm_dim}, sha256 {llm_sha256[:12]}; "
                "train one for this model with `mmstream train projector`"
            )

    def check_input(self, encoder: str, shape: tuple[int, ...]) -> None:
        if encoder != self.encoder or shape != (self.encoder_dim,):
            raise ProjectorMismatch(
                f"the projector expects {self.encoder} embeddings of width {self.encoder_dim}, "
                f"got {encoder} of shape {list(shape)}"
            )


class Projector:
    def __init__(self, meta: ProjectorMeta, weights: dict[str, Floats]) -> None:
        self.meta = meta
        self._w1, self._b1 = weights["fc1.weight"], weights["fc1.bias"]
        self._w2, self._b2 = weights["fc2.weight"], weights["fc2.bias"]
        self._norm_w, self._norm_b = weights["norm.weight"], weights["norm.bias"]
        expected = {"fc1.weight": (meta.hidden, meta.encoder_dim), "fc2.weight": (meta.k * meta.llm_dim, meta.hidden)}
        for name, shape in expected.items():
            if weights[name].shape != shape:
                raise ProjectorMismatch(f"{name} has shape {weights[name].shape}, the header says {shape}")

    @classmethod
    def load(cls, path: Path) -> Projector:
        return cls(*read_projector(path))

    def __call__(self, embedding: Floats) -> Floats:
        """(encoder_dim,) -> (k, llm_dim): the soft tokens for one input."""
        x = _layer_norm(np.asarray(embedding, dtype=np.float32), self._norm_w, self._norm_b)
        h = gelu(self._w1 @ x + self._b1)
        return (self._w2 @ h + self._b2).reshape(self.meta.k, self.meta.llm_dim)


def read_projector(path: Path) -> tuple[ProjectorMeta, dict[str, Floats]]:
    """The header and the weights (as float32) of a projector file, of either modality."""
    with safe_open(str(path), framework="numpy") as f:
        header = f.metadata() or {}
        weights = {name: f.get_tensor(name).astype(np.float32) for name in f.keys()}  # noqa: SIM118
    if "mmstream" not in header:
        raise ProjectorMismatch(f"{path.name} is not an mmstream projector (no metadata header)")
    return ProjectorMeta(**json.loads(header["mmstream"])), weights


def save_projector(path: Path, meta: ProjectorMeta, weights: dict[str, Floats]) -> str:
    """Write weights (fp16) and header; returns the file's sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(w, dtype=np.float16) for name, w in weights.items()}
    save_file(tensors, str(path), metadata={"mmstream": json.dumps(asdict(meta))})
    return hashlib.sha256(path.read_bytes()).hexdigest()


def soft_token_ids(vectors: Floats) -> list[int]:
    """Negative ids for soft tokens, derived from their vectors: equal inputs, equal ids (prefix cache)."""
    out = []
    for row in np.ascontiguousarray(vectors, dtype=np.float32):
        digest = hashlib.blake2b(row.tobytes(), digest_size=7).digest()
        out.append(-1 - int.from_bytes(digest, "big"))
    return out


def _layer_norm(x: Floats, weight: Floats, bias: Floats, eps: float = 1e-5) -> Floats:
    mean = x.mean()
    var = ((x - mean) ** 2).mean()
    out: Floats = (x - mean) / np.sqrt(var + eps) * weight + bias
    return out


def gelu(x: Floats) -> Floats:
    # The tanh form, as torch's GELU(approximate="tanh") used in training.
    out: Floats = 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    return out
