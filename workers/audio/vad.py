"""Silero VAD (the ONNX model faster-whisper ships), run incrementally across tasks.

The model reads 512-sample windows at 16 kHz, each with the 64 samples before it, and carries an
LSTM state. `VadState` holds everything needed to continue where the last pass stopped (state,
context, leftover samples), so consecutive passes may run in different worker processes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

WINDOW = 512  # 32 ms
CONTEXT = 64
Floats = npt.NDArray[np.float32]


def _b64(a: npt.NDArray[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def _unb64(s: str, dtype: type, shape: tuple[int, ...]) -> npt.NDArray[Any]:
    return np.frombuffer(base64.b64decode(s), dtype=dtype).reshape(shape).copy()


@dataclass
class VadState:
    h: Floats = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    c: Floats = field(default_factory=lambda: np.zeros((1, 1, 128), np.float32))
    context: Floats = field(default_factory=lambda: np.zeros(CONTEXT, np.float32))
    leftover: Floats = field(default_factory=lambda: np.zeros(0, np.float32))  # < WINDOW samples

    def to_state(self) -> dict[str, Any]:
        return {"h": _b64(self.h), "c": _b64(self.c), "context": _b64(self.context), "leftover": _b64(self.leftover)}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> VadState:
        if not d:
            return cls()
        leftover = np.frombuffer(base64.b64decode(d["leftover"]), dtype=np.float32).copy()
        return cls(
            _unb64(d["h"], np.float32, (1, 1, 128)),
            _unb64(d["c"], np.float32, (1, 1, 128)),
            _unb64(d["context"], np.float32, (CONTEXT,)),
            leftover,
        )


class SileroVad:
    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session

    def probabilities(self, state: VadState, audio: Floats) -> Floats:
        """Speech probability of each complete 32 ms window of `state.leftover + audio`; updates state."""
        samples = np.concatenate([state.leftover, audio.astype(np.float32)])
        n = len(samples) // WINDOW
        state.leftover = samples[n * WINDOW :]
        if n == 0:
            return np.zeros(0, np.float32)
        windows = samples[: n * WINDOW].reshape(n, WINDOW)
        contexts = np.concatenate([state.context[None, :], windows[:-1, -CONTEXT:]], axis=0)
        state.context = windows[-1, -CONTEXT:].copy()
        batch = np.concatenate([contexts, windows], axis=1)
        out, state.h, state.c = self._session.run(None, {"input": batch, "h": state.h, "c": state.c})
        return np.asarray(out, dtype=np.float32).reshape(-1)
