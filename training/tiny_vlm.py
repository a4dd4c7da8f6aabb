"""A tiny random-weight vision-language model in llama.cpp's own two-file form, written with `gguf`.

No real VLM weights are reachable offline, and the question the tests ask (does our disaggregated
path give the same greedy reply as llama.cpp's in-process `mtmd`?) does not depend on what the
weights are. So this writes three families, each a pair with the tensor names llama.cpp loads:
- "llava": a small "llama" text model with a byte-fallback SentencePiece vocabulary, and an
  `mmproj` file ("clip" arch, projector type "mlp": a ViT with a two-layer MLP onto the text
  model's width);
- "gemma3": a "gemma3" text model (token inputs scaled by the square root of the width inside the
  graph, picture inputs not) and a "gemma3" projector (a SigLIP-style ViT, average-pooled 2 x 2, an
  RMS norm and a projection), whose pictures come between `<start_of_image>` and `<end_of_image>`
  and are attended both ways (mtmd's `mtmd_decode_use_non_causal`);
- "idefics3" (SmolVLM's): a "llama" text model and an "idefics3" projector (a SigLIP-style ViT, its
  patches merged 2 x 2 and projected) that cuts a picture into tiles of 32 pixels (a 64-pixel
  longest edge: up to 2 x 2 tiles and an overview), with `<fake_token_around_image>`, the tile's
  `<row_r_col_c>`, `<global-img>` and newlines between them.
The files are seeded, so the same version writes the same bytes.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from gguf import GGUFWriter, TokenType

# Bump when the files change: the cache directory is named after it.
VERSION = 3

Family = Literal["llava", "gemma3", "idefics3"]
# The marks mtmd puts around a picture and between its tiles (it looks the last two up by text).
_MARKS: dict[Family, list[str]] = {
    "llava": [],
    "gemma3": ["<start_of_image>", "<end_of_image>"],
    "idefics3": ["<fake_token_around_image>", "<global-img>", "<row_1_col_1>", "<row_1_col_2>", "<row_2_col_1>"],
}
_IDEFICS3_PIECES = ["\n\n"]  # mtmd asks for a token that is two newlines


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
    merge: int = 2  # Gemma 3, Idefics3: patches merged merge x merge into one token
    tiled_edge: int = 64  # Idefics3: a picture's longest edge, resized, before it is cut into tiles


def _vocab(family: Family) -> tuple[list[str], list[float], list[int]]:
    """<unk>, <s>, </s> (and the family's picture marks), the 256 byte tokens, then single
    characters and a few words."""
    tokens = ["<unk>", "<s>", "</s>"] + _MARKS[family]
    types = [TokenType.UNKNOWN] + [TokenType.CONTROL] * (len(tokens) - 1)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    pieces = ["\u2581"] + list(string.ascii_letters + string.digits + string.punctuation)
    pieces += ["\u2581" + w for w in ("the", "a", "is", "of", "what", "picture", "this", "colour", "in", "it")]
    pieces += _IDEFICS3_PIECES if family == "idefics3" else []
    tokens += pieces
    types += [TokenType.NORMAL] * len(pieces)
    # SentencePiece merges pairs whose joined piece is in the vocabulary, highest score first.
    scores = [0.0] * (len(tokens) - len(pieces)) + [-float(i) for i in range(len(pieces))]
    return tokens, scores, [int(t) for t in types]


def _weights(rng: np.random.Generator, *shape: int, scale: float = 0.2) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _write_text(path: Path, s: Shape, rng: np.random.Generator, family: Family) -> None:
    tokens, scores, types = _vocab(family)
    w = GGUFWriter(str(path), "gemma3" if family == "gemma3" else "llama")
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
    # Gemma scales token embeddings by sqrt(width) in its graph: so that they stay the size of a
    # picture's, and a picture changes the reply, they are stored that much smaller.
    embd_scale = s.n_embd**-0.5 if family == "gemma3" else 1.0
    w.add_tensor("token_embd.weight", _weights(rng, len(tokens), s.n_embd, scale=embd_scale))
    for i in range(s.n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(s.n_embd, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{i}.{name}.weight", _weights(rng, s.n_embd, s.n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(s.n_embd, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", _weights(rng, s.n_ff, s.n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", _weights(rng, s.n_ff, s.n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", _weights(rng, s.n_embd, s.n_ff))
        if family == "gemma3":  # norms on each block's outputs and on the heads' queries and keys
            head = s.n_embd // s.n_head
            for name, width in (("post_attention_norm", s.n_embd), ("post_ffw_norm", s.n_embd)):
                w.add_tensor(f"blk.{i}.{name}.weight", np.ones(width, np.float32))
            for name in ("attn_q_norm", "attn_k_norm"):
                w.add_tensor(f"blk.{i}.{name}.weight", np.ones(head, np.float32))
    w.add_tensor("output_norm.weight", np.ones(s.n_embd, np.float32))
    w.add_tensor("output.weight", _weights(rng, len(tokens), s.n_embd, scale=1.0))
    _finish(w)


def _write_mmproj(path: Path, s: Shape, rng: np.random.Generator, family: Family) -> None:
    w = GGUFWriter(str(path), "clip")
    w.add_name("mmstream tiny VLM projector")
    w.add_string("clip.projector_type", "mlp" if family == "llava" else family)
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
    w.add_tensor(f"v.{_OUTER_LN[family]}.weight", np.ones(s.v_embd, np.float32))
    w.add_tensor(f"v.{_OUTER_LN[family]}.bias", np.zeros(s.v_embd, np.float32))
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
    if family == "gemma3":
        # Patches average-pooled `merge` x `merge` (clip.cpp's default is Gemma 3's 4), then an RMS
        # norm and a projection onto the text width, (vision width, text width) as the file holds it.
        w.add_uint32("clip.vision.projector.scale_factor", s.merge)
        w.add_tensor("mm.soft_emb_norm.weight", np.ones(s.v_embd, np.float32))
        w.add_tensor("mm.input_projection.weight", _weights(rng, s.v_embd, s.n_embd))
    elif family == "idefics3":
        # Tiles of `image_size` pixels over a picture resized to a longest edge of `tiled_edge`; each
        # tile's patches merged `merge` x `merge` (pixel shuffle) and projected onto the text width.
        w.add_uint32("clip.vision.projector.scale_factor", s.merge)
        w.add_uint32("clip.vision.preproc_image_size", s.tiled_edge)
        w.add_tensor("mm.model.fc.weight", _weights(rng, s.n_embd, s.v_embd * s.merge**2))
    else:
        hidden = 2 * s.n_embd
        w.add_tensor("mm.0.weight", _weights(rng, hidden, s.v_embd))
        w.add_tensor("mm.0.bias", np.zeros(hidden, np.float32))
        w.add_tensor("mm.2.weight", _weights(rng, s.n_embd, hidden))
        w.add_tensor("mm.2.bias", np.zeros(s.n_embd, np.float32))
    _finish(w)


# LLaVA's ViT normalises before its blocks; SigLIP's (Gemma 3's) after them.
_OUTER_LN: dict[Family, str] = {"llava": "pre_ln", "gemma3": "post_ln", "idefics3": "post_ln"}


def _finish(w: GGUFWriter) -> None:
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def build(root: Path, shape: Shape | None = None, seed: int = 0, family: Family = "llava") -> TinyVlm:
    """The pair under `root` (a cache: written once for a given version, family, shape and seed).

    The default shapes give 16 picture tokens: LLaVA's 4 x 4 patches of 8 pixels; Gemma 3's 8 x 8
    patches of 4 pixels, pooled 2 x 2. Idefics3's tiles are 4 x 4 patches of 8 pixels, merged 2 x 2:
    4 tokens a tile."""
    shape = shape or (Shape(patch_size=4) if family == "gemma3" else Shape())
    key = hashlib.sha256(f"{VERSION} {family} {shape} {seed}".encode()).hexdigest()[:12]
    out = root / f"tiny-{family}-{key}"
    vlm = TinyVlm(out / "tiny-vlm.gguf", out / "mmproj-tiny-vlm.gguf")
    if vlm.text.exists() and vlm.mmproj.exists():
        return vlm
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    _write_text(tmp / vlm.text.name, shape, rng, family)
    _write_mmproj(tmp / vlm.mmproj.name, shape, rng, family)
    tmp.rename(out)
    return vlm
