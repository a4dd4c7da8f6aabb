"""Streaming transcription of one session's input audio, one pass at a time.

A pass takes the state the last pass left (possibly in another worker), applies the new entries of
the session's input log in order (append, commit, clear), and returns the new state, the events
for the client and the utterances that ended. On the way:
- Silero VAD marks speech; with server VAD, silence of `silence_duration_ms` ends the turn and the
  utterance (with `prefix_padding_ms` before the speech) becomes a conversation item. With semantic
  VAD the end-of-turn model is asked once a pause is 200 ms long (once a pause, as pipecat does: asked
  again as the silence grew, it said "done" for most sentences paused midway in bench/turns.py). Where
  it says done, the words so far get a second opinion (`SentenceEnd`): a sentence that does not read
  as whole ("What is the capital") waits. The turn ends when both say done, or at the eagerness's
  longest wait.
- While an utterance is spoken, Whisper transcribes its current window again and LocalAgreement
  decides which words are safe to send as deltas.
- Long utterances are transcribed in windows: once the window passes `max_window_s`, it restarts
  at the end of a segment whose words are all committed, with those words as the prompt.
Pure of I/O: Redis reads and writes happen in `service.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shared.messages import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    AudioCommitted,
    AudioLogEntry,
    SemanticVad,
    ServerVad,
    SessionEvent,
    SpeechStarted,
    SpeechStopped,
    TranscriptDelta,
    TranscriptDone,
    new_id,
)
from shared.messages.session import TurnDetection
from shared.pcm import to_float
from workers.audio.agreement import HypothesisBuffer, split_words
from workers.audio.vad import WINDOW, VadState
from workers.audio.whisper import SAMPLE_RATE, WindowResult

Floats = npt.NDArray[np.float32]
_HYSTERESIS = 0.15
_MIN_PASS_S = 0.1  # new audio needed before another live pass
_MAX_WINDOW_S = 12.0
_KEEP_AFTER_TRIM_S = 1.0  # a trim point leaves at least this much audio in the window
# Semantic VAD asks the end-of-turn model once a pause is this long.
TURN_ASK_MS = 200


class Transcriber(Protocol):
    def transcribe(self, audio: Floats, prompt: str = "") -> WindowResult: ...


class SpeechDetector(Protocol):
    def probabilities(self, state: VadState, audio: Floats) -> Floats: ...


class EndOfTurn(Protocol):
    def complete(self, audio: Floats) -> float: ...


class SentenceEnd(Protocol):
    def score(self, text: str) -> float: ...


@dataclass
class Utterance:
    start: int = 0  # absolute sample offset of the first sample kept
    item_id: str | None = None
    speech_seen: bool = False
    window_start: int = 0  # absolute offset where the transcription window starts
    words_before_window: int = 0
    last_pass_end: int = 0
    hyp: HypothesisBuffer = field(default_factory=HypothesisBuffer)

    def to_state(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "item_id": self.item_id,
            "speech_seen": self.speech_seen,
            "window_start": self.window_start,
            "words_before_window": self.words_before_window,
            "last_pass_end": self.last_pass_end,
            "hyp": self.hyp.to_state(),
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Utterance:
        return cls(
            d["start"],
            d["item_id"],
            d["speech_seen"],
            d["window_start"],
            d["words_before_window"],
            d["last_pass_end"],
            HypothesisBuffer.from_state(d["hyp"]),
        )


@dataclass
class StreamState:
    version: int = 0
    cursor: str = "0-0"
    total: int = 0  # samples received since the session began (offsets never go back)
    vad: VadState = field(default_factory=VadState)
    in_speech: bool = False
    last_speech_end: int = 0
    utt: Utterance = field(default_factory=Utterance)
    turn_asks: int = 0  # end-of-turn questions asked in the current pause (0 or 1)

    def to_state(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "cursor": self.cursor,
            "total": self.total,
            "vad": self.vad.to_state(),
            "in_speech": self.in_speech,
            "last_speech_end": self.last_speech_end,
            "utt": self.utt.to_state(),
            "turn_asks": self.turn_asks,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any] | None) -> StreamState:
        if not d:
            return cls()
        return cls(
            d["version"],
            d["cursor"],
            d["total"],
            VadState.from_state(d["vad"]),
            d["in_speech"],
            d["last_speech_end"],
            Utterance.from_state(d["utt"]),
            d.get("turn_asks", 0),
        )


@dataclass(frozen=True)
class Ended:
    """An utterance that became (or, for a client commit, already is) conversation item `item_id`."""

    item_id: str
    audio: Floats
    transcript: str
    by_vad: bool
    item_added: bool


@dataclass
class PassResult:
    state: StreamState
    audio: Floats  # the utterance audio kept, from state.utt.start
    events: list[SessionEvent] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)


@dataclass(frozen=True)
class TurnConfig:
    """What one pass needs of the session and of the settings (whose defaults are the only ones)."""

    vad: TurnDetection | None
    turn_threshold: float  # semantic VAD: the end-of-turn probability that ends a turn
    text_threshold: float  # semantic VAD: the sentence-end score (log10) the words need as well
    prompt: str = ""


class StreamProcessor:
    def __init__(
        self,
        asr: Transcriber,
        vad: SpeechDetector,
        turns: EndOfTurn | None = None,
        sentences: SentenceEnd | None = None,
    ) -> None:
        self._asr = asr
        self._vad = vad
        self._turns = turns
        self._sentences = sentences

    def run(
        self, state: StreamState, audio: Floats, entries: list[tuple[str, AudioLogEntry, bytes]], config: TurnConfig
    ) -> PassResult:
        """Apply log entries (id, header, pcm) after `state.cursor`; then one live transcription pass."""
        out = PassResult(state, audio)
        for entry_id, entry, pcm in entries:
            if isinstance(entry, AudioAppend):
                samples = to_float(pcm)
                self._append(out, samples, config, entry.item_id)
            elif isinstance(entry, AudioCommit):
                self._end(
                    out, out.state.total, entry.item_id, by_vad=False, item_added=entry.item_added, prompt=config.prompt
                )
            elif isinstance(entry, AudioClear):
                self._restart(out, out.state.total)
                out.state.in_speech = False
            out.state.cursor = entry_id
        self._live_pass(out, config.prompt)
        return out

    # --- audio and turns ------------------------------------------------------------------------

    def _append(self, out: PassResult, samples: Floats, config: TurnConfig, item_id: str | None) -> None:
        st = out.state
        vad_pos = st.total - len(st.vad.leftover)  # absolute offset of the first sample VAD has not seen
        out.audio = np.concatenate([out.audio, samples])
        st.total += len(samples)
        if st.utt.item_id is None and config.vad is None:
            st.utt.item_id = item_id
        if len(samples) == 0:
            return
        probabilities = self._vad.probabilities(st.vad, samples)
        for i, p in enumerate(probabilities):
            self._on_window(out, float(p), vad_pos + i * WINDOW, config)
        if config.vad is not None and st.utt.item_id is None and not st.in_speech:
            self._keep_only_padding(out, config.vad)

    def _on_window(self, out: PassResult, p: float, start: int, config: TurnConfig) -> None:
        """One 32 ms VAD window: speech starts, continues, or has been silent long enough to end."""
        st = out.state
        vad = config.vad or ServerVad()  # without server VAD, speech only gates transcription
        if p >= vad.threshold:
            st.last_speech_end = start + WINDOW
            st.turn_asks = 0
            if not st.in_speech:
                st.in_speech = True
                self._speech_started(out, start, config)
            return
        silence = start + WINDOW - st.last_speech_end
        if not st.in_speech or p >= vad.threshold - _HYSTERESIS:
            return
        if silence < vad.silence_duration_ms * 16 and not self._turn_over(out, silence, start + WINDOW, config):
            return
        st.in_speech = False
        item = st.utt.item_id
        if config.vad is not None and item is not None:
            out.events.append(SpeechStopped(item_id=item, audio_end_ms=_ms(st.last_speech_end)))
            end = min(st.last_speech_end + vad.prefix_padding_ms * 8, st.total)  # half the padding after
            self._end(out, end, item, by_vad=True, item_added=False, prompt=config.prompt)

    def _turn_over(self, out: PassResult, silence: int, now: int, config: TurnConfig) -> bool:
        """Semantic VAD, in a pause: whether the end-of-turn model says the speaker is done, and the
        words so far read as a whole message; asked once a pause. One word is left to the sound:
        as text, "Hello." or "Thanks." scores as low as half a sentence."""
        st = out.state
        if not isinstance(config.vad, SemanticVad) or self._turns is None or st.utt.item_id is None:
            return False
        if st.turn_asks or silence < TURN_ASK_MS * SAMPLE_RATE // 1000:
            return False
        st.turn_asks += 1
        if self._turns.complete(out.audio[: now - st.utt.start]) < config.turn_threshold:
            return False
        words = st.utt.hyp.so_far()
        if self._sentences is None or len(words.split()) < 2:
            return True
        return self._sentences.score(words) >= config.text_threshold

    def _speech_started(self, out: PassResult, at: int, config: TurnConfig) -> None:
        st = out.state
        st.utt.speech_seen = True
        if config.vad is not None and st.utt.item_id is None:
            st.utt.item_id = new_id("item")
            pad = config.vad.prefix_padding_ms * SAMPLE_RATE // 1000
            self._drop_before(out, max(at - pad, st.utt.start))
        if config.vad is not None and st.utt.item_id is not None:
            out.events.append(SpeechStarted(item_id=st.utt.item_id, audio_start_ms=_ms(at)))

    def _keep_only_padding(self, out: PassResult, vad: ServerVad | SemanticVad) -> None:
        pad = vad.prefix_padding_ms * SAMPLE_RATE // 1000
        if len(out.audio) > 2 * pad + WINDOW:
            self._drop_before(out, out.state.total - pad)

    def _drop_before(self, out: PassResult, at: int) -> None:
        utt = out.state.utt
        cut = at - utt.start
        if cut > 0:
            out.audio = out.audio[cut:]
            utt.start = at
            utt.window_start = max(utt.window_start, at)

    def _end(self, out: PassResult, end: int, item_id: str, *, by_vad: bool, item_added: bool, prompt: str) -> None:
        """The utterance up to `end` is over: transcribe what is left of it and hand it over."""
        st, utt = out.state, out.state.utt
        utt.item_id = item_id
        speech = out.audio[: max(0, end - utt.start)]
        out.events.append(AudioCommitted(item_id=item_id, previous_item_id=None, by_vad=by_vad))
        if utt.speech_seen and len(speech):
            self._transcribe_window(out, speech, prompt, final=True)
        rest = utt.hyp.finish()
        if rest:
            out.events.append(TranscriptDelta(item_id=item_id, delta=_joined(utt.hyp, rest)))
        transcript = utt.hyp.text().strip()
        out.events.append(TranscriptDone(item_id=item_id, transcript=transcript, duration_s=len(speech) / SAMPLE_RATE))
        out.ended.append(Ended(item_id, speech, transcript, by_vad, item_added))
        self._restart(out, end)
        st.in_speech = False

    def _restart(self, out: PassResult, at: int) -> None:
        kept = out.audio[max(0, at - out.state.utt.start) :]
        out.audio = kept
        out.state.utt = Utterance(start=at, window_start=at, last_pass_end=at)

    # --- transcription --------------------------------------------------------------------------

    def _live_pass(self, out: PassResult, prompt: str) -> None:
        st, utt = out.state, out.state.utt
        if not utt.speech_seen or utt.item_id is None or st.total - utt.last_pass_end < _MIN_PASS_S * SAMPLE_RATE:
            return
        self._transcribe_window(out, out.audio, prompt, final=False)

    def _transcribe_window(self, out: PassResult, audio: Floats, prompt: str, *, final: bool) -> None:
        utt = out.state.utt
        offset = utt.window_start - utt.start
        window = audio[offset:]
        context = "".join(utt.hyp.committed[: utt.words_before_window]) or prompt
        result = self._asr.transcribe(window, context)
        words = [w for s in result.segments for w in split_words(s.text)]
        new = utt.hyp.insert(words, utt.words_before_window)
        utt.last_pass_end = utt.start + len(audio)
        if new and utt.item_id is not None:
            out.events.append(TranscriptDelta(item_id=utt.item_id, delta=_joined(utt.hyp, new)))
        if not final and len(window) > _MAX_WINDOW_S * SAMPLE_RATE:
            self._trim(utt, result, len(window))

    @staticmethod
    def _trim(utt: Utterance, result: WindowResult, window_len: int) -> None:
        """Start the next window after the last segment whose words are all committed."""
        inside = len(utt.hyp.committed) - utt.words_before_window
        seen, cut_s, cut_words = 0, 0.0, 0
        for seg in result.segments:
            seen += len(split_words(seg.text))
            if seen > inside or seg.end * SAMPLE_RATE > window_len - _KEEP_AFTER_TRIM_S * SAMPLE_RATE:
                break
            cut_s, cut_words = seg.end, seen
        if cut_words:
            utt.window_start += int(cut_s * SAMPLE_RATE)
            utt.words_before_window += cut_words


def _joined(hyp: HypothesisBuffer, new: list[str]) -> str:
    """The delta text; the utterance's first word loses Whisper's leading space."""
    text = "".join(new)
    return text.lstrip() if len(hyp.committed) == len(new) else text


def _ms(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE
