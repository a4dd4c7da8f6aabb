"""A reply's text, split as it streams into what it says and the tool calls it makes.

The decoder writes calls as the model does: Qwen2.5 and Hermes-tuned models put each call in
`<tool_call>` tags, `{"name": ..., "arguments": {...}}`; small models also answer with the bare call
object, or fence it as JSON, at the start of the reply. Under the decoder's grammar a call always has
the name first, so its arguments stream as they are written; a call written otherwise (no grammar)
is read whole once its object closes. What is not a call stays text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from shared.messages import new_id

_OPEN = "<tool_call>"
_CLOSE = "</tool_call>"
_FENCE = re.compile(r"```(?:json)?\s*(?=\{)")
# Qwen2.5's own template shows the call format as `{{"name": ..., "arguments": ...}}` (a literal in a Jinja
# string), and its models sometimes copy it: the outer braces are read as part of the tags.
_DOUBLED = re.compile(r"\s*\{\s*(?=\{)")
_NAME_FIRST = re.compile(r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class CallStarted:
    index: int  # the call's place among the reply's calls
    call_id: str
    name: str


@dataclass(frozen=True)
class CallArguments:
    index: int
    delta: str


@dataclass(frozen=True)
class CallDone:
    index: int
    call_id: str
    name: str
    arguments: str  # JSON text


Event = Text | CallStarted | CallArguments | CallDone


class ToolCallReader:
    """Feed the reply's text with `push`, then `finish`; both return what can be told so far."""

    def __init__(self) -> None:
        self._held = ""  # text not yet told: it may begin a call
        self._said = False  # some text other than whitespace was told (a bare call can only come first)
        self._call: _Call | None = None
        self._closing = False  # a call just ended: its closing tag or fence may follow
        self._extra_brace = False  # ... after the closing brace of a doubled call
        self._calls = 0

    @property
    def calls(self) -> int:
        return self._calls

    def push(self, text: str) -> list[Event]:
        self._held += text
        events: list[Event] = []
        while self._held:
            if self._call is not None:
                rest = self._call.push(self._held, events)
                self._held = ""
                if rest is None:
                    break  # the call goes on
                self._end_call(rest)
                continue
            if self._closing:
                if not self._drop_closing():
                    break
                continue
            if not self._start_call(events):
                break
        return events

    def _end_call(self, rest: str) -> None:
        assert self._call is not None
        if not self._call.was_call:
            self._calls -= 1  # it was text after all
        self._extra_brace = self._call.doubled
        self._call, self._held, self._closing = None, rest, True

    def _drop_closing(self) -> bool:
        """Drop a call's closing tag or fence; False while what is held may still be one."""
        stripped = self._held.lstrip()
        if self._extra_brace:
            if not stripped:
                return False
            self._extra_brace = False
            if stripped.startswith("}"):
                self._held = stripped[1:]
                return True
        for end in (_CLOSE, "```"):
            if stripped.startswith(end):
                self._held, self._closing = stripped[len(end) :], False
                return True
            if end.startswith(stripped):
                return False
        self._closing = False
        return True

    def finish(self) -> list[Event]:
        events: list[Event] = []
        if self._call is not None:
            self._call.finish(events)
            if not self._call.was_call:
                self._calls -= 1
            self._call = None
        else:
            rest = self._held.strip()
            if self._closing and any(end.startswith(rest) for end in (_CLOSE, "```")):
                rest = ""  # a closing tag cut short
            if rest:
                events.append(Text(self._held))
        self._held = ""
        return events

    def _start_call(self, events: list[Event]) -> bool:
        """Tell the text before a call and start it; False when what is held must wait for more."""
        held = self._held
        at = held.find(_OPEN)
        if not self._said and (opener := self._bare_opener(held.lstrip())) is not None:
            if opener == "":
                return False  # too early to tell
            self._begin(held[len(held) - len(held.lstrip()) + len(opener) :], opener)
            return True
        if at >= 0:
            self._tell(held[:at].rstrip(), events)
            self._begin(held[at + len(_OPEN) :], _OPEN)
            return True
        # Hold back what may be the start of a tag, and trailing whitespace (dropped before a call).
        keep = next((n for n in range(min(len(_OPEN) - 1, len(held)), 0, -1) if _OPEN.startswith(held[-n:])), 0)
        told = held[: len(held) - keep]
        stripped = told.rstrip()
        self._tell(stripped, events)
        self._held = told[len(stripped) :] + held[len(held) - keep :]
        return False

    @staticmethod
    def _bare_opener(text: str) -> str | None:
        """At the reply's start: "{" or a JSON fence opens a call; "" when it cannot be told yet."""
        if text.startswith("{"):
            return "{"
        if not text or "```".startswith(text) or ("```json".startswith(text)):
            return ""
        if text.startswith("```"):
            if m := _FENCE.match(text):
                return m.group(0) + "{"
            return "" if re.fullmatch(r"```(?:json)?\s*", text) else None
        return None

    def _begin(self, rest: str, opener: str) -> None:
        body = "{" if opener.endswith("{") else ""
        self._call = _Call(self._calls, opener[: len(opener) - len(body)])
        self._calls += 1
        self._held = body + rest

    def _tell(self, text: str, events: list[Event]) -> None:
        if text:
            self._said = self._said or bool(text.strip())
            events.append(Text(text))


class _Call:
    """One call being read: its object's text, scanned for where its arguments begin and end."""

    def __init__(self, index: int, opener: str) -> None:
        self.index = index
        self._opener = opener
        self._id = new_id("call")
        self._text = ""
        self._scanned = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._name: str | None = None
        self._args_start = -1
        self._args_told = 0
        self._args_end = -1
        self.was_call = False  # it turned out to be a call (not text that looked like one)
        self.doubled = False  # written in double braces
        self._opened = False  # its first brace and what follows it were seen

    def _open(self) -> bool:
        """Whether the call's start is known (and a doubled brace taken into the opener)."""
        after = self._text.lstrip()[1:].lstrip()
        if not after:
            return False
        if m := _DOUBLED.match(self._text):
            self.doubled, self._opener = True, self._opener + m.group(0)
            self._text = self._text[m.end() :]
        self._opened = True
        return True

    def push(self, text: str, events: list[Event]) -> str | None:
        """Read more of the call; the text after its object when it closed, else None."""
        start = len(self._text)
        self._text += text
        if not self._opened:
            if not self._open():
                return None
            start = 0
        if self._name is None and (m := _NAME_FIRST.match(self._text)):
            self._name = json.loads(f'"{m.group(1)}"')
            self._args_start = self._args_told = m.end()
            self.was_call = True
            events.append(CallStarted(self.index, self._id, self._name))
        end = self._scan(start)
        if end >= 0 and self._args_end < 0:
            self._args_end = end - 1  # the arguments were not an object: they end at the call's brace
        if self._name is not None:
            upto = len(self._text) if self._args_end < 0 else self._args_end
            if upto > self._args_told:
                events.append(CallArguments(self.index, self._text[self._args_told : upto]))
                self._args_told = upto
        if end < 0:
            return None
        rest, self._text = self._text[end:], self._text[:end]
        self._close(events)
        return rest

    def finish(self, events: list[Event]) -> None:
        """The reply ended inside the call (it ran out of tokens): tell what there is."""
        if not self._opened:
            events.append(Text(self._opener + self._text))
            return
        if self._name is not None:
            events.append(CallDone(self.index, self._id, self._name, self._text[self._args_start :].rstrip()))
        else:
            events.append(Text(self._opener + self._text))

    def _scan(self, start: int) -> int:
        """Follow the JSON nesting from `start`; the end of the call's object, or -1."""
        for i in range(start, len(self._text)):
            c = self._text[i]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif c == "\\":
                    self._escaped = True
                elif c == '"':
                    self._in_string = False
            elif c == '"':
                self._in_string = True
            elif c in "{[":
                self._depth += 1
            elif c in "}]":
                self._depth -= 1
                if self._depth == 1 and self._args_start >= 0 and self._args_end < 0 and i >= self._args_start:
                    self._args_end = i + 1
                if self._depth == 0:
                    return i + 1
        return -1

    def _close(self, events: list[Event]) -> None:
        if self._name is not None:
            arguments = self._text[self._args_start : self._args_end].rstrip()
            events.append(CallDone(self.index, self._id, self._name, arguments))
            return
        try:  # not name first: read the whole object
            call = json.loads(self._text)
        except ValueError:
            call = None
        if isinstance(call, dict) and isinstance(call.get("name"), str) and "arguments" in call:
            self.was_call = True
            arguments = call["arguments"]
            text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
            events += [
                CallStarted(self.index, self._id, call["name"]),
                CallArguments(self.index, text),
                CallDone(self.index, self._id, call["name"], text),
            ]
        else:
            events.append(Text(self._opener + self._text))
