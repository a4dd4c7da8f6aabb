"""LocalAgreement: which words of a streaming transcript are safe to send.

Each pass transcribes the current window of the utterance again and gives a hypothesis. A word is
committed, and sent to the client, once two consecutive hypotheses agree on it (the longest common
prefix of the last two, as in whisper_streaming's `HypothesisBuffer`). Committed words are never
taken back.

The window may start after the utterance's beginning (long utterances are trimmed at a point all
of whose earlier words are committed); the caller says how many committed words lie before the
window, and the words of the hypothesis that restate committed ones are aligned and skipped.
Pure logic: no model, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

_NON_WORD = re.compile(r"[^\w']+")
_WORDS = re.compile(r"\s*\S+")
_CLOSING = tuple(".?!,;:")


def split_words(text: str) -> list[str]:
    """Words with their leading whitespace, so that joining them gives the text back."""
    return _WORDS.findall(text)


def key(word: str) -> str:
    return _NON_WORD.sub("", word.lower())


def _unclosed(word: str, following: str | None) -> str:
    """A word as it is committed: a sentence mark the next word contradicts (it goes on in lower
    case: "capital? of") is where a window once ended, not where the speaker did."""
    stripped = following.lstrip() if following else ""
    if stripped[:1].islower() and word.rstrip()[-1:] in ".?!":
        return word.rstrip().rstrip(".?!")
    return word


@dataclass
class HypothesisBuffer:
    committed: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # the last hypothesis, beyond the committed words

    def insert(self, hypothesis: list[str], words_before_window: int = 0) -> list[str]:
        """Take the words of a new hypothesis; return the words it newly commits."""
        fresh = hypothesis[self._restated(hypothesis, words_before_window) :]
        # A window that ends mid-sentence makes Whisper close it ("capital of?"): the last word of a
        # hypothesis waits while it carries punctuation, until more audio (or the end) settles it.
        settled = fresh[:-1] if fresh and fresh[-1].rstrip()[-1:] in _CLOSING else fresh
        agreed: list[str] = []
        for i, (old, new) in enumerate(zip(self.pending, settled, strict=False)):
            if key(old) != key(new) or not key(new):
                break
            agreed.append(_unclosed(new, fresh[i + 1] if i + 1 < len(fresh) else None))
        self.committed.extend(agreed)
        self.pending = fresh[len(agreed) :]
        return agreed

    def finish(self) -> list[str]:
        """The utterance is over: whatever the last hypothesis holds is final."""
        rest, self.pending = self.pending, []
        self.committed.extend(rest)
        return rest

    def text(self) -> str:
        return "".join(self.committed)

    def so_far(self) -> str:
        """The committed words and the last hypothesis beyond them: the best guess at what was said."""
        return "".join(self.committed + self.pending)

    def _restated(self, hypothesis: list[str], words_before_window: int) -> int:
        """How many leading hypothesis words restate committed words that lie inside the window."""
        inside = [key(w) for w in self.committed[words_before_window:]]
        if not inside or not hypothesis:
            return 0
        said = [key(w) for w in hypothesis]
        blocks = [b for b in SequenceMatcher(None, inside, said, autojunk=False).get_matching_blocks() if b.size]
        if not blocks:
            return min(len(inside), len(hypothesis))
        last = blocks[-1]
        unmatched_tail = len(inside) - (last.a + last.size)
        return min(last.b + last.size + unmatched_tail, len(hypothesis))

    # --- persistence between passes (the next pass may run in another worker) ------------------

    def to_state(self) -> dict[str, Any]:
        return {"committed": self.committed, "pending": self.pending}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HypothesisBuffer:
        return cls(list(state.get("committed", [])), list(state.get("pending", [])))
