"""Streaming text cut into pieces worth speaking on their own: sentences, or clauses of long ones.

A piece is spoken as soon as it is complete, so the first one is kept short (the first clause) and
later ones run to a sentence end; a sentence with no end in sight is cut at a clause mark, or at a
space past `max_chars`. A mark counts only once the character after it has arrived ("3.5" is not
a sentence end, "done. " is). Pure logic: no I/O.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*\s|\n")
_CLAUSE_END = re.compile(r"[,;:—–]\s")
_UNSPOKEN = re.compile(r"[*#`_~|>]+")
_SPACES = re.compile(r"\s+")
_SPEAKABLE = re.compile(r"\w")


def spoken_form(text: str) -> str:
    """What the voice should read of a piece: markdown marks dropped, spaces collapsed."""
    return _SPACES.sub(" ", _UNSPOKEN.sub(" ", text)).strip()


def speakable(text: str) -> bool:
    return bool(_SPEAKABLE.search(text))


class PieceCutter:
    def __init__(self, *, first_clause_chars: int = 20, clause_chars: int = 100, max_chars: int = 250) -> None:
        self._first_clause = first_clause_chars
        self._clause = clause_chars
        self._max = max_chars
        self._buffer = ""
        self._cut = 0  # pieces given out so far

    def feed(self, text: str) -> list[str]:
        """Add streamed text; the pieces it completes, in order (each keeps its own spacing)."""
        self._buffer += text
        pieces = []
        while (end := self._next_end()) is not None:
            pieces.append(self._buffer[:end])
            self._buffer = self._buffer[end:]
            self._cut += 1
        return pieces

    def flush(self) -> list[str]:
        """The text left at the end of the reply, as a last piece."""
        rest, self._buffer = self._buffer, ""
        return [rest] if rest else []

    def _next_end(self) -> int | None:
        buffer = self._buffer
        if match := _SENTENCE_END.search(buffer):
            return match.end()
        clause = self._first_clause if self._cut == 0 else self._clause
        for match in _CLAUSE_END.finditer(buffer):
            if match.end() >= clause:
                return match.end()
        if len(buffer) > self._max:
            space = buffer.rfind(" ", 0, self._max)
            return space + 1 if space > 0 else self._max
        return None
