"""Speech over a spoken reply: an interruption that is meant, or a backchannel that lets it go on.

People say "uh-huh", "yeah", "okay" (or cough) while they listen. When speech starts over a spoken
reply, its audio is held back at once (no delta within the 200 ms barge-in budget) and the speech
is judged by what is cheap and measured (bench/turns.py):
- it interrupts as soon as the streaming transcript holds a word that asks to interrupt ("stop",
  "wait", "sorry", ...: `interrupt_words`) or two words that are not backchannel words, or when it
  lasted `barge_in_min_speech_ms` or more (long speech is meant, whatever its words): known
  when the VAD ends it (`speech_stopped` carries its span), or when it still goes on past that plus
  the VAD's silence (then no `speech_stopped` came in time);
- it is a backchannel when it was shorter, with at most one other word heard (whisper-tiny.en heard
  espeak's "got it" as "Guarded" and "hmm" as "Then..."): the reply's
  audio is released where it was held, and the utterance leaves no trace: its item is deleted and no
  event about it reaches the client (a client stops playing at `speech_started`, so it is not sent).
Meanwhile the worker events of that speech are held, and sent in order once it proves an interruption.
`barge_in_min_speech_ms: 0` turns this off: any speech interrupts at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shared.messages import SessionEvent, SpeechStarted, SpeechStopped, TranscriptDelta, TranscriptDone

log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
_MARGIN_S = 0.3  # for the audio worker's pass and the event's way here


@dataclass
class _Held:
    item_id: str
    start_ms: int
    events: list[SessionEvent] = field(default_factory=list)
    text: str = ""
    timer: asyncio.Task[None] | None = None


class BargeIn:
    """Judges speech that starts over a spoken reply; `on_event` sees every worker event first."""

    def __init__(
        self,
        *,
        min_speech_ms: int,
        words: list[str],
        interrupt_words: list[str],
        speaking: Callable[[], bool],
        silence_ms: Callable[[], int],
        hold: Callable[[], None],
        release: Callable[[], None],
        interrupt: Callable[[list[SessionEvent]], Awaitable[None]],
        drop: Callable[[str], Awaitable[None]],
    ) -> None:
        self._min_s = min_speech_ms / 1000
        self._words = frozenset(words)
        self._interrupt_words = frozenset(interrupt_words)
        self._speaking = speaking
        self._silence_ms = silence_ms  # how long the VAD waits before it says speech stopped
        self._hold = hold
        self._release = release
        self._interrupt = interrupt  # send these events, then cancel the reply
        self._drop = drop  # forget this item: it was a backchannel
        self._held: _Held | None = None

    async def on_event(self, event: SessionEvent) -> bool:
        """True when the event is taken here (held, or dropped); False: handle it as usual."""
        held = self._held
        if held is None:
            if not (isinstance(event, SpeechStarted) and self._min_s > 0 and self._speaking()):
                return False
            self._hold()
            held = self._held = _Held(event.item_id, event.audio_start_ms, [event])
            wait_s = self._min_s + self._silence_ms() / 1000 + _MARGIN_S
            held.timer = asyncio.create_task(self._after(wait_s, held), name="barge-in")
            return True
        if getattr(event, "item_id", None) != held.item_id:
            return False
        held.events.append(event)
        if isinstance(event, TranscriptDelta):
            held.text += event.delta
            if self._means_it(held.text):
                await self._meant(held, f"heard {held.text!r}")
        elif isinstance(event, SpeechStopped) and event.audio_end_ms - held.start_ms >= self._min_s * 1000:
            await self._meant(held, f"{event.audio_end_ms - held.start_ms} ms of speech")
        elif isinstance(event, TranscriptDone):
            if self._means_it(event.transcript):
                await self._meant(held, f"heard {event.transcript!r}")
            else:
                await self._let_go(held, event.transcript)
        return True

    def _means_it(self, text: str) -> bool:
        said = _WORD.findall(text.lower())
        return any(w in self._interrupt_words for w in said) or sum(w not in self._words for w in said) >= 2

    def close(self) -> None:
        """The session has ended: nothing is judged any more."""
        if self._held is not None:
            self._cancel_timer(self._held)
            self._held = None

    async def _after(self, seconds: float, held: _Held) -> None:
        await asyncio.sleep(seconds)
        stopped = any(isinstance(e, SpeechStopped) for e in held.events)
        if self._held is held and not stopped:
            try:
                await self._meant(held, f"still speaking {seconds:.2f} s after it started")
            except Exception:  # the client left meanwhile: nobody to tell
                log.info("speech over a spoken reply could not be acted on", exc_info=True)

    async def _meant(self, held: _Held, why: str) -> None:
        if self._held is not held:
            return
        log.info("speech over a spoken reply interrupts it: %s", why)
        self._held = None
        self._cancel_timer(held)
        await self._interrupt(held.events)

    async def _let_go(self, held: _Held, transcript: str) -> None:
        log.info("speech over a spoken reply was a backchannel (%r): the reply goes on", transcript)
        self._held = None
        self._cancel_timer(held)
        self._release()
        with contextlib.suppress(Exception):
            await self._drop(held.item_id)

    @staticmethod
    def _cancel_timer(held: _Held) -> None:
        if held.timer is not None and held.timer is not asyncio.current_task():
            held.timer.cancel()
