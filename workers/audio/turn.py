"""Smart Turn v3.2 (BSD-2-Clause, pipecat-ai): is the speaker done, judged from the sound of the turn.

Whisper-tiny features of the last 8 s of the utterance (left-padded with silence when shorter, the
waveform normalised first, as the model was trained) go through the int8 ONNX model, which answers
the probability that the turn is complete. faster-whisper's feature extractor computes the same
log-mel features as the reference (transformers' WhisperFeatureExtractor), to 2e-7.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 16_000
_SECONDS = 8
Floats = npt.NDArray[np.float32]


class EndOfTurnModel:
    def __init__(self, path: Path, *, threads: int) -> None:
        import onnxruntime
        from faster_whisper.feature_extractor import FeatureExtractor

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._features = FeatureExtractor(feature_size=80, chunk_length=_SECONDS)

    def complete(self, audio: Floats) -> float:
        """The probability that the speaker has finished the turn `audio` (16 kHz floats) ends with."""
        n = _SECONDS * SAMPLE_RATE
        x = audio[-n:].astype(np.float32)
        x = np.pad(x, (n - len(x), 0))
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        features = self._features(x, padding=0)[:, : n // 160]
        (probability,) = self._session.run(None, {"input_features": features[None].astype(np.float32)})[0][0]
        return float(probability)
