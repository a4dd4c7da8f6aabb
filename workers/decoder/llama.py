"""A thin, typed layer over llama.cpp's C API (through llama-cpp-python's ctypes bindings).

The high-level `llama_cpp.Llama` runs one sequence and cannot feed several sequences (or vectors)
in one batch; the engine needs both, so it talks to the C API through this module only.
"""

from __future__ import annotations

import codecs
import ctypes
import functools
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as C
import numpy as np
import numpy.typing as npt

from workers.decoder.backends import Backends, load_backends
from workers.decoder.grammar import Grammar

log = logging.getLogger("llama.cpp")

# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation.
_LEVELS = {3: logging.WARNING, 4: logging.ERROR}


@C.llama_log_callback
def _log_callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    # llama.cpp is chatty at INFO; keep warnings and errors, in our log format.
    if level in _LEVELS:
        log.log(_LEVELS[level], text.decode("utf-8", "replace").rstrip())


LIB_DIR = Path(C.__file__).parent / "lib"


@functools.cache
def init_backend(cpu_variant: str = "auto") -> Backends:
    """Route llama.cpp's log through ours and load its backends (once per process)."""
    C.llama_log_set(_log_callback, ctypes.c_void_p(0))
    backends = load_backends(LIB_DIR, cpu_variant)
    C.llama_backend_init()
    return backends


@dataclass(frozen=True)
class ContextConfig:
    n_ctx_per_seq: int
    n_seq: int
    n_batch: int  # tokens per llama_decode call
    n_threads: int
    n_gpu_layers: int
    cpu_variant: str = "auto"  # which libggml-cpu-*.so to load: "auto" or a variant's name
    n_ubatch: int = 0  # tokens computed at once within a call (0: n_batch, at most 512)
    kv_unified: bool = True  # one cache shared by all sequences, instead of a stream per sequence


class LlamaModel:
    """The model, its vocabulary and one context holding `n_seq` sequences' KV cache."""

    def __init__(self, path: Path, config: ContextConfig) -> None:
        self.backends = init_backend(config.cpu_variant)
        mparams = C.llama_model_default_params()
        mparams.n_gpu_layers = config.n_gpu_layers if config.n_gpu_layers >= 0 else 1_000_000
        self._model = C.llama_model_load_from_file(str(path).encode(), mparams)
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self._vocab = C.llama_model_get_vocab(self._model)
        cparams = C.llama_context_default_params()
        cparams.n_ctx = config.n_ctx_per_seq * config.n_seq
        cparams.n_batch = config.n_batch
        cparams.n_ubatch = config.n_ubatch or min(config.n_batch, 512)
        cparams.n_seq_max = config.n_seq
        cparams.n_threads = config.n_threads
        cparams.n_threads_batch = config.n_threads
        cparams.kv_unified = config.kv_unified
        cparams.no_perf = True
        self._ctx = C.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            C.llama_model_free(self._model)
            raise RuntimeError("llama.cpp could not create a context")
        self._mem = C.llama_get_memory(self._ctx)
        # A unified cache lets any sequence grow to the whole context; ours are held to their share,
        # so the sequences' caches together never outgrow it.
        self.n_ctx_per_seq = min(config.n_ctx_per_seq, C.llama_n_ctx_seq(self._ctx))
        self.n_batch = config.n_batch
        self.n_ubatch = cparams.n_ubatch
        self.n_seq = config.n_seq
        self.n_embd = C.llama_model_n_embd(self._model)
        self.n_vocab = C.llama_vocab_n_tokens(self._vocab)
        self._batch = C.llama_batch_init(config.n_batch, 0, 1)
        self._vector_batch = C.llama_batch_init(config.n_batch, self.n_embd, 1)
        self.architecture = self.meta("general.architecture") or ""
        # Gemma models multiply their token embeddings by sqrt(width) inside the graph, but not
        # vectors fed through `embd`: scale those here so that both reach the model alike.
        self.input_scale = math.sqrt(self.n_embd) if self.architecture.startswith("gemma") else 1.0

    # --- metadata and text ----------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = C.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace") if n >= 0 else None

    def token_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", "replace")

    def tokenize(self, text: str, *, add_special: bool = False) -> list[int]:
        data = text.encode()
        cap = len(data) + 16
        buf = (C.llama_token * cap)()
        n = C.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, True)
        if n < 0:  # buffer too small: n is minus the needed size
            cap = -n
            buf = (C.llama_token * cap)()
            n = C.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, True)
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(256)
        n = C.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = C.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def is_eog(self, token: int) -> bool:
        return bool(C.llama_vocab_is_eog(self._vocab, token))

    def special_token(self, which: str) -> str:
        token = {"bos": C.llama_vocab_bos, "eos": C.llama_vocab_eos}[which](self._vocab)
        return "" if token < 0 else self.token_text(token)

    # --- KV cache and decoding ------------------------------------------------------------------

    def forget(self, seq: int, from_pos: int = 0) -> None:
        """Drop the cached tokens of `seq` from position `from_pos` on."""
        C.llama_memory_seq_rm(self._mem, seq, from_pos, -1)

    def share(self, src: int, dst: int, n_tokens: int) -> None:
        """Give `dst` the first `n_tokens` cached by `src` (whatever `dst` held is dropped).

        In a unified cache the prefix's cells are marked as `dst`'s too (no data moves); with a stream
        per sequence llama.cpp copies the stream's buffers on the next decode call (a memory copy,
        far cheaper than evaluating the tokens again). The copy is then cut to the prefix.
        """
        C.llama_memory_seq_cp(self._mem, src, dst, -1, -1)
        C.llama_memory_seq_rm(self._mem, dst, n_tokens, -1)

    def save(self, seq: int) -> SeqState:
        """A copy of what `seq` holds in the cache (its tokens' keys and values, in host memory)."""
        size = C.llama_state_seq_get_size(self._ctx, seq)
        state = (ctypes.c_uint8 * size)()
        n = C.llama_state_seq_get_data(self._ctx, state, size, seq)
        return SeqState(state, n)

    def restore(self, seq: int, state: SeqState) -> bool:
        """Put a saved state into `seq` (whatever it held is dropped); False when it found no room."""
        return bool(C.llama_state_seq_set_data(self._ctx, state.data, state.size, seq))

    def decode(self, entries: Sequence[tuple[int, int, int, bool]]) -> None:
        """Evaluate (token, position, sequence, wants_logits) entries in one llama_decode call."""
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, pos, seq, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        rc = C.llama_decode(self._ctx, batch)
        if rc != 0:
            raise DecodeError(rc)

    def decode_vectors(
        self, vectors: npt.NDArray[np.float32], entries: Sequence[tuple[int, int, bool]], *, causal: bool = True
    ) -> None:
        """Evaluate input vectors (rows of `vectors`, in token-embedding units) at (position, sequence,
        wants_logits) entries in one llama_decode call: soft tokens in place of token ids.

        `causal` False: each vector also attends to those after it in its sequence, as Gemma 3 reads
        a picture (mtmd_helper_decode_image_chunk does the same); they must fit in one micro-batch.
        """
        rows = np.ascontiguousarray(vectors, dtype=np.float32) * np.float32(self.input_scale)
        if rows.shape != (len(entries), self.n_embd):
            raise ValueError(f"expected {len(entries)} vectors of width {self.n_embd}, got {rows.shape}")
        if not causal and len(entries) > self.n_ubatch:
            raise ValueError(f"{len(entries)} vectors attended both ways do not fit a micro-batch of {self.n_ubatch}")
        batch = self._vector_batch
        batch.n_tokens = len(entries)
        ctypes.memmove(batch.embd, rows.ctypes.data, rows.nbytes)
        for i, (pos, seq, logits) in enumerate(entries):
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = logits
        if causal:
            rc = C.llama_decode(self._ctx, batch)
        else:
            C.llama_set_causal_attn(self._ctx, False)
            try:
                rc = C.llama_decode(self._ctx, batch)
            finally:
                C.llama_set_causal_attn(self._ctx, True)
        if rc != 0:
            raise DecodeError(rc)

    def logits(self, batch_index: int) -> npt.NDArray[np.float32]:
        """A copy of the logits at `batch_index` of the last decode call."""
        ptr = C.llama_get_logits_ith(self._ctx, batch_index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def new_sampler(self, temperature: float, top_p: float, seed: int, grammar: Grammar | None = None) -> Sampler:
        return Sampler(
            self._ctx,
            temperature,
            top_p,
            seed,
            n_vocab=self.n_vocab,
            vocab=self._vocab,
            grammar=grammar,
            piece=functools.partial(self.piece, special=True),
            tokenize=self.tokenize,
        )

    def grammar_error(self, grammar: Grammar) -> str | None:
        """Why llama.cpp cannot use this grammar (it parses it when the sampler is made), or None."""
        sampler = _grammar_sampler(self._vocab, grammar)
        if not sampler:
            return "llama.cpp could not parse the grammar made from it"
        C.llama_sampler_free(sampler)
        return None

    def close(self) -> None:
        if self._ctx:
            C.llama_batch_free(self._batch)
            C.llama_batch_free(self._vector_batch)
            C.llama_free(self._ctx)
            C.llama_model_free(self._model)
            self._ctx = None


@dataclass(frozen=True)
class SeqState:
    """A sequence's saved cache: `size` bytes of `data` (kept as llama.cpp wrote them, not copied)."""

    data: ctypes.Array[ctypes.c_uint8]
    size: int

    def __len__(self) -> int:
        return self.size


class DecodeError(RuntimeError):
    """llama_decode failed; 1 means the KV cache had no room for the batch."""

    def __init__(self, rc: int) -> None:
        super().__init__(f"llama_decode returned {rc}")
        self.rc = rc


class Sampler:
    """A sampler chain for one sequence: greedy at temperature 0, else top-p then temperature; with a
    grammar (structured output, tool calls), only a token the grammar allows is picked.

    Greedy is an argmax over the logits in place: llama.cpp's greedy sampler first copies the whole
    vocabulary (150k entries for Qwen) into a candidate array, for every token. The grammar is asked
    about the token picked without it first, and applied to the whole vocabulary only when it refuses
    that token, as llama.cpp's own common sampler does: running it over every candidate every step cost
    40% of the tokens/s here (bench/grammar.py).

    A grammar with triggers (a tool call may start anywhere) waits until the reply so far matches one,
    then takes over from there. That wait is done here, not by llama.cpp's lazy grammar: llama.cpp feeds
    the text from the trigger on to the grammar and throws (through the C API: the process dies) when
    the grammar refuses it, e.g. a reply that starts with "{}". Here that text is tried token by token,
    each one offered before it is accepted, and a refused start leaves the reply free.
    """

    def __init__(
        self,
        ctx: C.llama_context_p,
        temperature: float,
        top_p: float,
        seed: int,
        *,
        n_vocab: int,
        vocab: C.llama_vocab_p | None = None,
        grammar: Grammar | None = None,
        piece: Callable[[int], bytes] | None = None,
        tokenize: Callable[[str], list[int]] | None = None,
    ) -> None:
        self._ctx = ctx
        self._n_vocab = n_vocab
        self._vocab = vocab
        self._chain = None
        self._grammar = None
        self._waiting: Grammar | None = None  # a grammar whose trigger has not come yet
        self._said = ""  # the reply so far, while waiting for a trigger
        self._refused: set[int] = set()  # where a trigger matched but the grammar refused the text
        self._piece = piece
        self._tokenize = tokenize
        if grammar is not None:
            self._one = (C.llama_token_data * 1)()  # the one candidate offered to the grammar first
            self._one_array = C.llama_token_data_array(self._one, 1, -1, False)
            if grammar.triggers:
                if piece is None or tokenize is None:
                    raise ValueError("a grammar with triggers needs piece and tokenize")
                self._waiting = grammar
            else:
                self._grammar = _grammar_sampler(vocab, grammar)
                if not self._grammar:
                    raise ValueError("llama.cpp could not parse the grammar")
        if temperature > 0.0:
            self._chain = C.llama_sampler_chain_init(C.llama_sampler_chain_default_params())
            C.llama_sampler_chain_add(self._chain, C.llama_sampler_init_top_k(64))
            C.llama_sampler_chain_add(self._chain, C.llama_sampler_init_top_p(top_p, 1))
            C.llama_sampler_chain_add(self._chain, C.llama_sampler_init_temp(temperature))
            C.llama_sampler_chain_add(self._chain, C.llama_sampler_init_dist(seed & 0xFFFFFFFF))

    def accept(self, token: int) -> None:
        """A token chosen earlier (an attempt this one continues): the samplers move past it."""
        if self._chain is not None:
            C.llama_sampler_accept(self._chain, token)
        if self._grammar is not None and not self._allowed(self._grammar, token, 0.0):
            # Not what this grammar makes (llama.cpp would throw on it): the rest of the reply goes free.
            log.warning("a resumed reply left its grammar; going on without it")
            C.llama_sampler_free(self._grammar)
            self._grammar = None
            return
        self._follow(token)

    def sample(self, batch_index: int) -> int:
        """Pick the next token from the logits at `batch_index` of the last decode (and accept it)."""
        logits = np.ctypeslib.as_array(C.llama_get_logits_ith(self._ctx, batch_index), shape=(self._n_vocab,))
        if self._chain is None:
            token = int(logits.argmax())
        else:
            token = int(C.llama_sampler_sample(self._chain, self._ctx, batch_index))  # accepts it too
        if self._grammar is None and self._waiting is None:
            return token  # the hot path: no grammar, nothing more
        if self._grammar is not None and not self._allowed(self._grammar, token, float(logits[token])):
            token = self._constrained(logits)
        self._follow(token)
        return token

    def _follow(self, token: int) -> None:
        """Move the grammar past `token`, or start it if `token` completes a trigger."""
        if self._grammar is not None:
            C.llama_sampler_accept(self._grammar, token)
            return
        if self._waiting is None:
            return
        assert self._piece is not None
        self._said += self._piece(token).decode("utf-8", "replace")
        for pattern in self._waiting.triggers:
            if (m := re.fullmatch(pattern, self._said)) is not None and m.start(1) not in self._refused:
                self._grammar = self._started(self._waiting, self._said[m.start(1) :])
                if self._grammar is not None:
                    self._waiting, self._said = None, ""
                    return
                self._refused.add(m.start(1))

    def _started(self, grammar: Grammar, text: str) -> C.llama_sampler_p | None:
        """A grammar sampler that has accepted `text`, or None when the grammar refuses it."""
        assert self._tokenize is not None
        sampler = _grammar_sampler(self._vocab, Grammar(grammar.text))
        if not sampler:
            return None
        for token in self._tokenize(text):
            if not self._allowed(sampler, token, 0.0):
                C.llama_sampler_free(sampler)
                return None
            C.llama_sampler_accept(sampler, token)
        return sampler

    def _allowed(self, grammar: C.llama_sampler_p, token: int, logit: float) -> bool:
        self._one[0] = C.llama_token_data(token, logit, 0.0)
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        C.llama_sampler_apply(grammar, ctypes.byref(self._one_array))
        return bool(np.isfinite(self._one[0].logit))

    def _constrained(self, logits: npt.NDArray[np.float32]) -> int:
        """The pick among the tokens the grammar allows (the chain's first pick was refused)."""
        data = (C.llama_token_data * self._n_vocab)()
        view = np.ctypeslib.as_array(data).view(np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")]))
        view["id"], view["logit"], view["p"] = np.arange(self._n_vocab), logits, 0.0
        candidates = C.llama_token_data_array(data, self._n_vocab, -1, False)
        C.llama_sampler_apply(self._grammar, ctypes.byref(candidates))
        if self._chain is None:
            return int(view["id"][int(np.argmax(view["logit"][: candidates.size]))])
        C.llama_sampler_apply(self._chain, ctypes.byref(candidates))
        return int(view["id"][candidates.selected])

    def close(self) -> None:
        if self._chain:
            C.llama_sampler_free(self._chain)
            self._chain = None
        if self._grammar:
            C.llama_sampler_free(self._grammar)
            self._grammar = None


def _grammar_sampler(vocab: C.llama_vocab_p | None, grammar: Grammar) -> C.llama_sampler_p:
    """llama.cpp's grammar sampler; null when it cannot parse the grammar."""
    return C.llama_sampler_init_grammar(vocab, grammar.text.encode(), b"root")


class TextStream:
    """Turns token pieces into text without splitting a multi-byte character across deltas."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
