"""A Piper voice, loaded once per process with onnxruntime's threads set, speaking text as PCM16.

`piper.PiperVoice.load` builds its ONNX session with default options (as many threads as cores),
so the session is built here with this worker's thread count and handed to `PiperVoice` as is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt


class Voice:
    def __init__(self, model: Path, config: Path, *, threads: int) -> None:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])
        self._voice = PiperVoice(config=PiperConfig.from_dict(json.loads(config.read_text())), session=session)
        self.rate: int = self._voice.config.sample_rate
        self.name = model.name.removesuffix(".onnx")

    def speak(self, text: str, speed: float = 1.0) -> Iterator[npt.NDArray[np.int16]]:
        """PCM16 samples at `self.rate`, one array per sentence Piper finds in `text`."""
        from piper.config import SynthesisConfig

        config = SynthesisConfig(length_scale=self._voice.config.length_scale / speed)
        for chunk in self._voice.synthesize(text, config):
            yield chunk.audio_int16_array
