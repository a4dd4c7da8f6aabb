"""The language model's own input embeddings, read straight from its GGUF file.

llama.cpp has no API for rows of the token-embedding matrix, so they are read from the file and
dequantized row by row with the `gguf` package (the one llama.cpp itself ships): the file is
memory-mapped and a 150k-word table is never expanded whole. Soft tokens live in this space: a
projector is trained to produce vectors like these rows, and the decoder scales them as the model
scales its own (see `LlamaModel.input_scale`).

The header is walked here rather than by `gguf.GGUFReader`, which builds every metadata field: the
tokenizer's 150k tokens and merges took it 11 s of a short projector training.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType
from gguf.quants import dequantize

_TENSOR = "token_embd.weight"
_ALIGNMENT_KEY = "general.alignment"
# Bytes of each fixed-size metadata value, from gguf's own table of their numpy types; strings and
# arrays are walked.
_SIZES = {kind: np.dtype(t).itemsize for kind, t in GGUFReader.gguf_scalar_to_np.items()}


class _Header:
    """A cursor over a little-endian GGUF header (version 2 or 3)."""

    def __init__(self, buf: memoryview) -> None:
        self.buf, self.at = buf, 0

    def u32(self) -> int:
        (v,) = struct.unpack_from("<I", self.buf, self.at)
        self.at += 4
        return int(v)

    def u64(self) -> int:
        (v,) = struct.unpack_from("<Q", self.buf, self.at)
        self.at += 8
        return int(v)

    def string(self) -> str:
        n = self.u64()
        self.at += n
        return bytes(self.buf[self.at - n : self.at]).decode("utf-8")

    def skip(self, kind: GGUFValueType) -> None:
        """Step over one metadata value."""
        if kind == GGUFValueType.STRING:
            n = self.u64()
            self.at += n
        elif kind == GGUFValueType.ARRAY:
            inner, count = GGUFValueType(self.u32()), self.u64()
            if inner in _SIZES:
                self.at += count * _SIZES[inner]
            else:
                for _ in range(count):
                    self.skip(inner)
        else:
            self.at += _SIZES[kind]


class TokenTable:
    def __init__(self, path: Path) -> None:
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
        header = _Header(memoryview(mapped.data))
        if header.u32() != GGUF_MAGIC or header.u32() not in (2, 3):
            raise ValueError(f"{path.name} is not a GGUF file of version 2 or 3")
        n_tensors, n_fields = header.u64(), header.u64()
        alignment = GGUF_DEFAULT_ALIGNMENT
        for _ in range(n_fields):
            key, kind = header.string(), GGUFValueType(header.u32())
            if key == _ALIGNMENT_KEY and kind == GGUFValueType.UINT32:  # the type the format gives it
                alignment = header.u32()
            else:
                header.skip(kind)
        found: tuple[list[int], GGMLQuantizationType, int] | None = None
        for _ in range(n_tensors):
            name = header.string()
            dims = [header.u64() for _ in range(header.u32())]
            qtype, offset = GGMLQuantizationType(header.u32()), header.u64()
            if name == _TENSOR:
                found = dims, qtype, offset
        if found is None:
            raise ValueError(f"{path.name} has no {_TENSOR} tensor")
        dims, self._type, offset = found
        # GGUF lists dimensions innermost first: (width, vocabulary).
        self.width, self.vocab_size = int(dims[0]), int(dims[1])
        block, block_bytes = GGML_QUANT_SIZES[self._type]
        row_bytes = self.width // block * block_bytes
        start = -(-header.at // alignment) * alignment + offset
        self._data = mapped[start : start + self.vocab_size * row_bytes].reshape(self.vocab_size, row_bytes)

    def rows(self, token_ids: Sequence[int]) -> npt.NDArray[np.float32]:
        """The embeddings of `token_ids`, shape (len(token_ids), width), float32."""
        if any(not 0 <= t < self.vocab_size for t in token_ids):
            raise ValueError("token id outside the vocabulary")
        raw = self._data[np.asarray(token_ids, dtype=np.int64)]
        rows = dequantize(np.ascontiguousarray(raw), self._type)
        return np.asarray(rows, dtype=np.float32).reshape(len(token_ids), self.width)
