"""The language model's own input embeddings, read straight from its GGUF file.

llama.cpp has no API for rows of the token-embedding matrix, so they are read with the `gguf`
package (the reader llama.cpp itself ships) and dequantized row by row: the file is memory-mapped
and a 150k-word table is never expanded whole. Soft tokens live in this space: a projector is
trained to produce vectors like these rows, and the decoder scales them as the model scales its
own (see `LlamaModel.input_scale`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from gguf import GGUFReader
from gguf.quants import dequantize

_TENSOR = "token_embd.weight"


class TokenTable:
    def __init__(self, path: Path) -> None:
        reader = GGUFReader(path, "r")
        tensors = {t.name: t for t in reader.tensors}
        if _TENSOR not in tensors:
            raise ValueError(f"{path.name} has no {_TENSOR} tensor")
        self._tensor = tensors[_TENSOR]
        # GGUF lists dimensions innermost first: (width, vocabulary).
        self.width = int(self._tensor.shape[0])
        self.vocab_size = int(self._tensor.shape[1])

    def rows(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """The embeddings of `token_ids`, shape (len(token_ids), width), float32."""
        if any(not 0 <= t < self.vocab_size for t in token_ids):
            raise ValueError("token id outside the vocabulary")
        raw = self._tensor.data[np.asarray(token_ids, dtype=np.int64)]
        rows = dequantize(np.ascontiguousarray(raw), self._tensor.tensor_type)
        return np.asarray(rows, dtype=np.float32).reshape(len(token_ids), self.width)
