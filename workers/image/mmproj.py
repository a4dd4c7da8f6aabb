"""A picture through a llama.cpp multimodal projector (`mmproj` file), on the image worker.

llama-server runs a VLM's vision encoder inside its one process; here the image worker runs it
(llama.cpp's `mtmd` library, through llama-cpp-python's bindings) and stores what it gives: the
picture's embeddings in the language model's input space, the text tokens the model wants
around them (some models mark a picture's start and end; those that cut a picture into tiles, as
SmolVLM's Idefics3 projector does, put a tile's row and column between tiles), and whether the
model attends both ways over the picture (Gemma 3) rather than only backwards. The decoder feeds
those as they are.

mtmd needs the text model for its vocabulary (those marker tokens) and its width, to check the
projector's output against it. A vocabulary-only load leaves the width unset (and mtmd then skips
the check), so the model is loaded whole but memory-mapped, without the CPU's repacked copies of
its weights: the file's pages are read once and shared with the page cache, nothing is computed.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as C
import numpy as np
import numpy.typing as npt
from llama_cpp import mtmd_cpp as M
from PIL import Image

from shared.errors import ModelError
from shared.messages import LAYOUT_EMBEDDING
from workers.decoder.llama import init_backend

_TEXT, _IMAGE = 0, 1  # mtmd_input_chunk_type


@dataclass(frozen=True)
class Encoded:
    embeddings: npt.NDArray[np.float32]  # (tokens, model width): every tile's, in order
    # The picture's place in the prompt, in order: text token ids, and LAYOUT_EMBEDDING for each
    # row of `embeddings` (a tile is a run of them).
    layout: list[int]
    causal: bool = True  # False: the model attends both ways over each tile, in one decode call


class MmprojEncoder:
    """One mtmd context; pictures are encoded one at a time (mtmd holds one output buffer)."""

    def __init__(self, text_model: Path, mmproj: Path, *, threads: int, cpu_variant: str = "auto") -> None:
        init_backend(cpu_variant)
        mparams = C.llama_model_default_params()
        mparams.n_gpu_layers = 0
        mparams.use_extra_bufts = False
        self._model = C.llama_model_load_from_file(str(text_model).encode(), mparams)
        if not self._model:
            raise ModelError(f"llama.cpp could not load {text_model}")
        params = M.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = threads
        params.print_timings = False
        self._ctx = M.mtmd_init_from_file(str(mmproj).encode(), self._model, params)
        if not self._ctx:
            C.llama_model_free(self._model)
            raise ModelError(f"{mmproj} is not a projector for {text_model.name} (see the log for why)")
        if not M.mtmd_support_vision(self._ctx):
            self.close()
            raise ModelError(f"{mmproj} has no vision encoder")
        # Positions over a grid (Qwen2-VL's M-RoPE) need the decoder to feed what mtmd's helper
        # feeds; until it does, say so.
        if M.mtmd_decode_use_mrope(self._ctx):
            self.close()
            raise ModelError(f"{mmproj} needs M-RoPE positions, which the decoder does not feed yet")
        self._n_embd = C.llama_model_n_embd_inp(self._model)
        self._marker = M.mtmd_default_marker()
        self._lock = threading.Lock()

    def encode(self, picture: Image.Image) -> Encoded:
        rgb = np.asarray(picture.convert("RGB"), dtype=np.uint8)
        height, width = rgb.shape[:2]
        with self._lock:
            data = (ctypes.c_ubyte * rgb.size).from_buffer_copy(rgb.tobytes())
            bitmap = M.mtmd_bitmap_init(width, height, data)
            chunks = M.mtmd_input_chunks_init()
            try:
                return self._encode(bitmap, chunks)
            finally:
                M.mtmd_input_chunks_free(chunks)
                M.mtmd_bitmap_free(bitmap)

    def _encode(self, bitmap: M.mtmd_bitmap_p, chunks: M.mtmd_input_chunks_p) -> Encoded:
        text = M.mtmd_input_text(self._marker, len(self._marker), False, True)
        bitmaps = (M.mtmd_bitmap_p_ctypes * 1)(bitmap)
        if (rc := M.mtmd_tokenize(self._ctx, chunks, ctypes.byref(text), bitmaps, 1)) != 0:
            raise ModelError(f"mtmd could not prepare the picture (code {rc})")
        layout: list[int] = []
        tiles: list[npt.NDArray[np.float32]] = []
        causal = True
        for i in range(M.mtmd_input_chunks_size(chunks)):
            chunk = M.mtmd_input_chunks_get(chunks, i)
            kind = M.mtmd_input_chunk_get_type(chunk)
            if kind == _TEXT:
                n = ctypes.c_size_t()
                tokens = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                layout.extend(tokens[: n.value])
            elif kind == _IMAGE:
                causal = not M.mtmd_decode_use_non_causal(self._ctx, chunk)
                if (rc := M.mtmd_encode_chunk(self._ctx, chunk)) != 0:
                    raise ModelError(f"mtmd could not encode the picture (code {rc})")
                n_tokens = M.mtmd_input_chunk_get_n_tokens(chunk)
                if M.mtmd_input_chunk_get_n_pos(chunk) != n_tokens:
                    raise ModelError("the projector gives a picture fewer positions than tokens; not supported yet")
                out = M.mtmd_get_output_embd(self._ctx)  # valid until the next encode: copied
                tiles.append(np.ctypeslib.as_array(out, shape=(n_tokens * self._n_embd,)).reshape(n_tokens, -1).copy())
                layout.extend([LAYOUT_EMBEDDING] * n_tokens)
            else:
                raise ModelError(f"mtmd gave a chunk of kind {kind} for a picture")
        if not tiles:
            raise ModelError("mtmd gave no embeddings for the picture")
        return Encoded(np.concatenate(tiles), layout, causal)

    def close(self) -> None:
        if self._ctx:
            M.mtmd_free(self._ctx)
            self._ctx = None
        if self._model:
            C.llama_model_free(self._model)
            self._model = None
