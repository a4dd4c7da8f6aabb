"""Whisper through faster-whisper's CTranslate2 model, on windows of any length up to 30 s.

`WhisperModel.transcribe` pads every call to a 30 s window, which costs about 0.4 s of encoder time
on this machine even for one second of speech. CTranslate2 accepts shorter mel inputs, so a
streaming pass encodes just the audio it has (tens of milliseconds). Whisper was trained on 30 s
windows: on a short window that ends mid-speech it often starts the sentence again ("What is the
capital? What is the"). Two seconds of silence after the audio stop most of that; what remains is
cut where the text starts to repeat itself. The token budget is bounded by the audio's length, and
an output that still looks like a loop (too long, or too compressible) is decoded again from the
padded 30 s window.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer

SAMPLE_RATE = 16_000
MAX_WINDOW_S = 30.0
_FRAMES_PER_S = 100  # mel frames; the encoder halves them
_TIME_PER_TIMESTAMP = 0.02
_TOKENS_PER_S = 7
_LOOP_COMPRESSION = 2.4
_PROMPT_TOKENS = 120
_TAIL_SILENCE_S = 2.0
# Whole clips: faster-whisper's (and OpenAI's) temperature fallback, with sampling seeded.
_FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
_SEED = 0
_LOG_PROB = -1.0
_NO_SPEECH = 0.6
Floats = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the window's start
    end: float
    text: str


@dataclass(frozen=True)
class ClipSegment:
    id: int  # from 0
    start: float
    end: float
    text: str
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[tuple[str, float, float]] | None


@dataclass(frozen=True)
class WindowResult:
    segments: list[Segment]
    no_speech_prob: float

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)


class WhisperASR:
    def __init__(self, model_dir: Path, *, threads: int, compute_type: str = "int8", language: str = "en") -> None:
        self._load_args: dict[str, Any] = {
            "model_size_or_path": str(model_dir),
            "device": "cpu",
            "compute_type": compute_type,
            "cpu_threads": threads,
            "num_workers": 1,
        }
        self._model = WhisperModel(**self._load_args)
        multilingual = self._model.model.is_multilingual
        self.language = language if multilingual else "en"
        self._tokenizer = Tokenizer(self._model.hf_tokenizer, multilingual, task="transcribe", language=self.language)
        self.width = int(self._model.model.n_mels)  # for logs only
        self._seeded = threading.Lock()
        self.name = model_dir.name

    # --- features and encoder -------------------------------------------------------------------

    def features(self, audio: Floats) -> Floats:
        """Log-mel features without the 30 s padding (an even number of frames)."""
        feats = self._model.feature_extractor(audio)[:, :-1]
        if feats.shape[1] % 2:
            feats = np.pad(feats, ((0, 0), (0, 1)))
        return np.ascontiguousarray(feats, dtype=np.float32)

    def encode(self, feats: Floats) -> ctranslate2.StorageView:
        return self._model.model.encode(ctranslate2.StorageView.from_array(feats[None]), to_cpu=True)

    def encoder_states(self, audio: Floats) -> Floats:
        """Encoder output for the whole audio, [frames, width] at 50 frames/s, 30 s at a time."""
        step = int(MAX_WINDOW_S * SAMPLE_RATE)
        chunks = [np.array(self.encode(self.features(audio[i : i + step])))[0] for i in range(0, len(audio), step)]
        return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 0), np.float32)

    # --- whole clips ----------------------------------------------------------------------------

    def transcribe_clip(
        self, audio: Floats, *, language: str | None, prompt: str | None, word_timestamps: bool, temperature: float
    ) -> Iterator[ClipSegment]:
        """Offline quality for a whole clip: faster-whisper's own 30 s windows and beam search.

        Temperature 0 decodes greedily (beam search) and falls back to sampling at higher temperatures
        where a window's text looks wrong (too repetitive, too unlikely), as OpenAI's API documents. The
        same clip and parameters give the same text every time: sampling runs on a model loaded for the
        clip, whose decoding thread draws from a generator seeded afresh (CTranslate2 seeds each thread's
        generator once, at its first draw, so reseeding a long-lived model changes nothing).
        """
        kwargs: dict[str, Any] = {
            "language": language if self._model.model.is_multilingual and language else self.language,
            "initial_prompt": prompt or None,
            "word_timestamps": word_timestamps,
            "beam_size": 5,
            "vad_filter": False,
        }
        if temperature == 0:
            greedy = list(self._model.transcribe(audio, temperature=(0.0,), **kwargs)[0])
            if not any(_needs_fallback(s) for s in greedy):
                yield from (_clip_segment(s) for s in greedy)
                return
        with self._seeded:  # one seed for one sampling model at a time
            ctranslate2.set_random_seed(_SEED)
            sampler = WhisperModel(**self._load_args)
            temperatures = _FALLBACK if temperature == 0 else (temperature,)
            sampled = list(sampler.transcribe(audio, temperature=temperatures, **kwargs)[0])
            del sampler
        yield from (_clip_segment(s) for s in sampled)

    # --- decoding -------------------------------------------------------------------------------

    def transcribe(self, audio: Floats, prompt: str = "") -> WindowResult:
        """Transcribe up to 30 s of 16 kHz audio with segment timestamps."""
        audio = audio[: int(MAX_WINDOW_S * SAMPLE_RATE)]
        seconds = len(audio) / SAMPLE_RATE
        if seconds < 0.1:
            return WindowResult([], 1.0)
        budget = int(seconds * _TOKENS_PER_S) + 10
        feats = self.features(np.concatenate([audio, np.zeros(int(_TAIL_SILENCE_S * SAMPLE_RATE), np.float32)]))
        result = self._decode(self.encode(feats), prompt, budget, seconds)
        if _looks_like_a_loop(result, budget):
            padded = np.ascontiguousarray(pad_or_trim(feats, int(MAX_WINDOW_S * _FRAMES_PER_S)))
            result = self._decode(self.encode(padded), prompt, budget, seconds)
            if _looks_like_a_loop(result, budget):
                return WindowResult([], result.no_speech_prob)
        return result

    def _decode(self, encoded: ctranslate2.StorageView, prompt: str, budget: int, seconds: float) -> WindowResult:
        tok = self._tokenizer
        previous = tok.encode(" " + prompt.strip())[-_PROMPT_TOKENS:] if prompt.strip() else []
        prefix = self._model.get_prompt(tok, previous, without_timestamps=False)
        out = self._model.model.generate(
            encoded,
            [prefix],
            beam_size=1,
            max_length=len(prefix) + budget,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        segments = _without_restart(_segments(out.sequences_ids[0], tok, seconds))
        return WindowResult(segments, float(out.no_speech_prob))


def _needs_fallback(s: Any) -> bool:
    """faster-whisper's (and OpenAI's) tests for a window decoded badly, silence excepted."""
    silent = s.no_speech_prob > _NO_SPEECH and s.avg_logprob < _LOG_PROB
    return not silent and (s.compression_ratio > _LOOP_COMPRESSION or s.avg_logprob < _LOG_PROB)


def _clip_segment(s: Any) -> ClipSegment:
    words = [(w.word, float(w.start), float(w.end)) for w in s.words] if s.words else None
    return ClipSegment(
        s.id - 1,
        float(s.start),
        float(s.end),
        s.text,
        float(s.avg_logprob),
        float(s.compression_ratio),
        float(s.no_speech_prob),
        words,
    )


def _segments(tokens: list[int], tok: Tokenizer, seconds: float) -> list[Segment]:
    """Split a token sequence at its timestamp tokens: <|t0|> text <|t1|><|t1|> text <|t2|> ..."""
    segments: list[Segment] = []
    start, text_tokens = 0.0, list[int]()
    for token in tokens:
        if token == tok.eot:
            break
        if token >= tok.timestamp_begin:
            t = (token - tok.timestamp_begin) * _TIME_PER_TIMESTAMP
            if text_tokens:
                segments.append(Segment(start, min(t, seconds), tok.decode(text_tokens)))
                text_tokens = []
            start = t
        else:
            text_tokens.append(token)
    if text_tokens:  # ran out of budget or the window ends mid-segment
        segments.append(Segment(start, seconds, tok.decode(text_tokens)))
    return [s for s in segments if s.text.strip()]


def _without_restart(segments: list[Segment]) -> list[Segment]:
    """Cut the text where it starts over from its beginning (at least three words repeated)."""
    words = "".join(s.text for s in segments).split()
    keys = [w.strip(".,?!;:").lower() for w in words]
    for k in range(1, len(keys) - 2):
        tail = keys[k:]
        if len(tail) >= 3 and keys[: len(tail)] == tail:
            return _first_words(segments, k)
    return segments


def _first_words(segments: list[Segment], n: int) -> list[Segment]:
    kept: list[Segment] = []
    for seg in segments:
        words = seg.text.split()
        if n <= 0:
            break
        if len(words) <= n:
            kept.append(seg)
        else:
            kept.append(Segment(seg.start, seg.end, " " + " ".join(words[:n])))
        n -= len(words)
    return kept


def _looks_like_a_loop(result: WindowResult, budget: int) -> bool:
    text = result.text.encode()
    if len(text) < 24:
        return False
    compression = len(text) / max(1, len(zlib.compress(text)))
    return compression > _LOOP_COMPRESSION or len(result.text.split()) >= budget
