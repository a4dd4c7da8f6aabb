"""A tiny random-weight vision-language model in llama.cpp's own two-file form, written with `gguf`.

No real VLM weights are reachable offline, and the question the tests ask (does our disaggregated
path give the same greedy reply as llama.cpp's in-process `mtmd`?) does not depend on what the
weights are. So this writes a LLaVA-style pair: a small "llama" text model with a byte-fallback
SentencePiece vocabulary, and an `mmproj` file ("clip" arch, projector type "mlp": a ViT with a
two-layer MLP onto the text model's width), with the tensor names clip.cpp loads. The files are
seeded, so the same version writes the same bytes.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, TokenType

# Bump when the files change: the cache directory is named after it.
VERSION = 2


@dataclass(frozen=True)
class TinyVlm:
    text: Path
    mmproj: Path


@dataclass(frozen=True)
class Shape:
    n_embd: int = 64  # text width, and the projector's output
    n_ff: int = 96  # must differ from n_embd (clip.cpp's up/down swap test reads widths)
    n_layer: int = 2
    n_head: int = 4
    n_ctx: int = 512
    v_embd: int = 32  # vision tower width
    v_ff: int = 48
    v_layer: int = 2  # LLaVA takes the features from the last layer but one: 1 runs
    v_head: int = 2
    image_size: int = 32
    patch_size: int = 8  # 4 x 4 = 16 image tokens


def _vocab() -> tuple[list[str], list[float], list[int]]:
    """<unk>, <s>, </s>, the 256 byte tokens, then single characters and a few words."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    pieces = ["\u2581"] + list(string.ascii_letters + string.digits + string.punctuation)
    pieces += ["\u2581" + w for w in ("the", "a", "is", "of", "what", "picture", "this", "colour", "in", "it")]
    tokens += pieces
    types += [TokenType.NORMAL] * len(pieces)
    # SentencePiece merges pairs whose joined piece is in the vocabulary, highest score first.
    scores = [0.0] * (3 + 256) + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def _weights(rng: np.random.Generator, *shape: int, scale: float = 0.2) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _write_text(path: Path, s: Shape, rng: np.random.Generator) -> None:
    tokens, scores, types = _vocab()
    w = GGUFWriter(str(path), "llama")
    w.add_name("mmstream tiny VLM text model")
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_feed_forward_length(s.n_ff)
    w.add_block_count(s.n_layer)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    # numpy shapes are (rows, columns): ggml's ne is the reverse, (input width, output width).
    w.add_tensor("token_embd.weight", _weights(rng, len(tokens), s.n_embd, scale=1.0))
    for i in range(s.n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(s.n_embd, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{i}.{name}.weight", _weights(rng, s.n_embd, s.n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(s.n_embd, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", _weights(rng, s.n_ff, s.n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", _weights(rng, s.n_ff, s.n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", _weights(rng, s.n_embd, s.n_ff))
    w.add_tensor("output_norm.weight", np.ones(s.n_embd, np.float32))
    w.add_tensor("output.weight", _weights(rng, len(tokens), s.n_embd, scale=1.0))
    _finish(w)


def _write_mmproj(path: Path, s: Shape, rng: np.random.Generator) -> None:
    w = GGUFWriter(str(path), "clip")
    w.add_name("mmstream tiny VLM projector")
    w.add_string("clip.projector_type", "mlp")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_audio_encoder", False)
    w.add_bool("clip.use_gelu", True)
    w.add_uint32("clip.vision.embedding_length", s.v_embd)
    w.add_uint32("clip.vision.feed_forward_length", s.v_ff)
    w.add_uint32("clip.vision.block_count", s.v_layer)
    w.add_uint32("clip.vision.projection_dim", s.n_embd)
    w.add_uint32("clip.vision.attention.head_count", s.v_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add_uint32("clip.vision.image_size", s.image_size)
    w.add_uint32("clip.vision.patch_size", s.patch_size)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    n_patches = (s.image_size // s.patch_size) ** 2
    w.add_tensor("v.patch_embd.weight", _weights(rng, s.v_embd, 3, s.patch_size, s.patch_size))
    w.add_tensor("v.patch_embd.bias", np.zeros(s.v_embd, np.float32))
    w.add_tensor("v.position_embd.weight", _weights(rng, n_patches, s.v_embd))
    w.add_tensor("v.pre_ln.weight", np.ones(s.v_embd, np.float32))
    w.add_tensor("v.pre_ln.bias", np.zeros(s.v_embd, np.float32))
    for i in range(s.v_layer):
        for norm in ("ln1", "ln2"):
            w.add_tensor(f"v.blk.{i}.{norm}.weight", np.ones(s.v_embd, np.float32))
            w.add_tensor(f"v.blk.{i}.{norm}.bias", np.zeros(s.v_embd, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(f"v.blk.{i}.{name}.weight", _weights(rng, s.v_embd, s.v_embd))
            w.add_tensor(f"v.blk.{i}.{name}.bias", _weights(rng, s.v_embd, scale=0.02))
        w.add_tensor(f"v.blk.{i}.ffn_up.weight", _weights(rng, s.v_ff, s.v_embd))
        w.add_tensor(f"v.blk.{i}.ffn_up.bias", np.zeros(s.v_ff, np.float32))
        w.add_tensor(f"v.blk.{i}.ffn_down.weight", _weights(rng, s.v_embd, s.v_ff))
        w.add_tensor(f"v.blk.{i}.ffn_down.bias", np.zeros(s.v_embd, np.float32))
    hidden = 2 * s.n_embd
    w.add_tensor("mm.0.weight", _weights(rng, hidden, s.v_embd))
    w.add_tensor("mm.0.bias", np.zeros(hidden, np.float32))
    w.add_tensor("mm.2.weight", _weights(rng, s.n_embd, hidden))
    w.add_tensor("mm.2.bias", np.zeros(s.n_embd, np.float32))
    _finish(w)


def _finish(w: GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def build(root: Path, shape: Shape = Shape(), seed: int = 0) -> TinyVlm:
    """The pair under `root` (a cache: written once for a given version, shape and seed)."""
    key = hashlib.sha256(f"{VERSION} {shape} {seed}".encode()).hexdigest()[:12]
    out = root / f"tiny-vlm-{key}"
    vlm = TinyVlm(out / "tiny-vlm.gguf", out / "mmproj-tiny-vlm.gguf")
    if vlm.text.exists() and vlm.mmproj.exists():
        return vlm
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    _write_text(tmp / vlm.text.name, shape, rng)
    _write_mmproj(tmp / vlm.mmproj.name, shape, rng)
    tmp.rename(out)
    return vlm
