"""Is the sentence over, judged from its words: a small chat model's chance that the user's message ends here.

Smart Turn hears most sentences paused midway ("What is the capital ... of France?") as finished
(bench/turns.py), from the sound alone; the words tell them apart. The transcript so far goes in as
a user message, after the model's own chat template and default system line, and the score is the
log10 probability that the message ends there: its end-of-message token next, or after one closing
mark (. ? !). Whisper's own closing marks are stripped first: it closes every window, whether or not
the speaker is done. Zero-shot, with SmolLM2-135M-Instruct: whole questions score -0.1 to -2.6, their
first halves -4.5 to -7 ("And then": -3.8); short social phrases score low too ("Thank you." -3.9,
"Hello." -4.1), which is why one word is left to the sound (`workers/audio/stream.py`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from workers.decoder.llama import ContextConfig, LlamaModel
from workers.decoder.prompt import ChatTemplate

_MARK = "\x01mm-words\x01"  # where the words go in the rendered template
_CLOSERS = (".", "?", "!")
_MAX_WORDS = 48  # the end of a long utterance is what decides
_N_CTX = 256  # per sequence: the template's opening, the last words, one closing mark
_PREFIX, _WORDS = 0, 1  # sequence ids: the template's opening, kept; the words, read again each time


class SentenceEndModel:
    def __init__(self, path: Path, *, threads: int) -> None:
        config = ContextConfig(
            n_ctx_per_seq=_N_CTX, n_seq=2 + len(_CLOSERS), n_batch=_N_CTX, n_threads=threads, n_gpu_layers=0
        )
        self._model = LlamaModel(path, config)
        template = ChatTemplate(
            self._model.meta("tokenizer.chat_template"),
            bos_token=self._model.special_token("bos"),
            eos_token=self._model.special_token("eos"),
        )
        opening, _, closing = template.render([{"role": "user", "content": _MARK}]).partition(_MARK)
        if not closing:
            raise ValueError(f"{path.name}: its chat template does not write a user message as given")
        self._end = self._model.tokenize(closing)[0]
        self._closers = [self._model.tokenize(c)[0] for c in _CLOSERS]
        self._opening = self._model.tokenize(opening)  # the template writes any BOS itself
        self._model.decode([(t, i, _PREFIX, False) for i, t in enumerate(self._opening)])

    def score(self, text: str) -> float:
        """log10 of the chance that a user message reading `text` (a transcript so far) is complete."""
        words = " ".join(text.split()[-_MAX_WORDS:]).rstrip(" .?!,;:")
        if not words:
            return 0.0
        model, n = self._model, len(self._opening)
        tokens = model.tokenize(words)[-(_N_CTX - n - 2) :]  # the end of the words is what decides
        model.share(_PREFIX, _WORDS, n)
        model.decode([(t, n + i, _WORDS, i == len(tokens) - 1) for i, t in enumerate(tokens)])
        first = _softmax(model.logits(len(tokens) - 1))
        at = n + len(tokens)
        # Each closing mark in a sequence of its own, after the words: one call for all of them.
        for k in range(len(self._closers)):
            model.share(_WORDS, _WORDS + 1 + k, at)
        model.decode([(c, at, _WORDS + 1 + k, True) for k, c in enumerate(self._closers)])
        chance = float(first[self._end])
        for k, c in enumerate(self._closers):
            chance += float(first[c]) * float(_softmax(model.logits(k))[self._end])
        return math.log10(max(chance, 1e-12))

    def close(self) -> None:
        self._model.close()


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()
