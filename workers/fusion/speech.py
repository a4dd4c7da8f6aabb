"""The speech projector: Whisper encoder states in, a few soft tokens per second out.

As in Ultravox, `stack` consecutive encoder frames (50 a second) are concatenated and an MLP maps
each group to one vector in the language model's input space. Training (`train_speech`) places
each vector near the embedding of the token spoken there, or near a learned `blank` where none
ends (CTC). Here the runs are collapsed as a CTC decoder does: blank vectors are dropped and a run
of vectors nearest the same token becomes one soft token, their mean, brought to that token's
embedding length. What the language model reads is then about one soft token per spoken token,
in order. Numpy only, like the image projector; the file holds the projector's vocabulary (the
tokens it was trained to place, with their embedding rows) for the collapse.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workers.fusion.projector import Floats, ProjectorMeta, ProjectorMismatch, gelu, read_projector


class SpeechProjector:
    def __init__(self, meta: ProjectorMeta, weights: dict[str, Floats]) -> None:
        if meta.modality != "audio" or meta.stack < 1:
            raise ProjectorMismatch("not a speech projector")
        self.meta = meta
        self._w = weights
        self._rows = _unit(weights["vocab_rows"])  # (V, llm_dim) unit rows; index 0 is the blank
        self._lengths = np.linalg.norm(weights["vocab_rows"], axis=1)
        expected = meta.encoder_dim * meta.stack
        if weights["fc1.weight"].shape != (meta.hidden, expected):
            raise ProjectorMismatch(f"fc1.weight has shape {weights['fc1.weight'].shape}, expected {expected} inputs")

    @classmethod
    def load(cls, path: Path) -> SpeechProjector:
        return cls(*read_projector(path))

    def frames(self, states: Floats) -> Floats:
        """(frames, encoder_dim) -> (frames // stack, llm_dim): one vector per group of frames."""
        stack = self.meta.stack
        n = len(states) // stack
        x = np.asarray(states[: n * stack], dtype=np.float32).reshape(n, stack * self.meta.encoder_dim)
        w = self._w
        mean = x.mean(axis=1, keepdims=True)
        x = (x - mean) / np.sqrt(x.var(axis=1, keepdims=True) + 1e-5) * w["norm.weight"] + w["norm.bias"]
        h = gelu(x @ w["fc1.weight"].T + w["fc1.bias"])
        out: Floats = h @ w["fc2.weight"].T + w["fc2.bias"]
        return out

    def __call__(self, states: Floats) -> Floats:
        """Soft tokens for one utterance: (n, llm_dim), n about the number of tokens spoken."""
        vectors = self.frames(states)
        if not len(vectors):
            return vectors
        nearest = (_unit(vectors) @ self._rows.T).argmax(axis=1)
        out = []
        start = 0
        for i in range(1, len(nearest) + 1):
            if i == len(nearest) or nearest[i] != nearest[start]:
                if nearest[start] != 0:  # not the blank
                    mean = vectors[start:i].mean(axis=0)
                    out.append(mean / max(float(np.linalg.norm(mean)), 1e-8) * self._lengths[nearest[start]])
                start = i
        return np.stack(out).astype(np.float32) if out else np.zeros((0, self.meta.llm_dim), np.float32)


def _unit(x: Floats) -> Floats:
    out: Floats = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)
    return out
