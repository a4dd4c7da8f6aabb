"""Turn-taking: when does a spoken turn end, under server VAD and under semantic VAD, on speech made here.

The spoken set: questions, each said by espeak-ng in several voices and rates (and by the speech
worker's Piper voice at two speeds), whole or with a pause of 400-1200 ms in the middle ("What is the
capital ... of France?"). The pause is put into the recording of the whole sentence, at the quietest
point near the word boundary, so the words before it keep the sound of a sentence that goes on.
Each recording, with silence after it, goes through the audio worker's own turn logic
(`workers.audio.stream.StreamProcessor`) with the real Silero VAD and the real Smart Turn model, in
100 ms chunks as a client streams it. Transcription (the real Whisper) runs only where the words
decide: semantic VAD with the sentence-end model's second opinion. Reported per setting:
- cut: the share of paused sentences whose turn ended in the pause (the speaker was cut off);
- delay: from the end of the speech to the commit, p50 and p95, counting the audio the decision waited
  for and the time the end-of-turn model took.
Then, through a running service (gateway, decoder, audio and speech workers, the 0.5B model), speech
over a long spoken reply: backchannels ("uh-huh", "okay", "I see", ...) and real interruptions ("Wait,
stop.", "Sorry, can you repeat that?", ...) in the same voices, streamed in real time. Reported: the
share of backchannels that cancelled the reply, real interruptions that did not, and the time from
the start of the speech to the cancel.

Run: python -m bench.turns [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from shared.config import Settings
from shared.messages import AudioAppend, AudioCommitted, SemanticVad, ServerVad
from shared.messages.session import TurnDetection
from shared.models import resolve_model, voice_files
from shared.pcm import StreamResampler
from training.speech import speak
from workers.audio.sentence_end import SentenceEndModel
from workers.audio.stream import StreamProcessor, StreamState, Transcriber, TurnConfig
from workers.audio.turn import EndOfTurnModel
from workers.audio.vad import SileroVad
from workers.audio.whisper import SAMPLE_RATE, WhisperASR, WindowResult
from workers.speech.voice import Voice

# (first part, second part): a pause goes between them in the paused variant. No first part is itself
# a whole question: "What should I cook ... for dinner tonight?" was one, and no judge can tell that
# pause from an end (it was 6 of the 14 cuts of the eighth session's run at -4.0).
QUESTIONS = [
    ("What is the capital", "of France?"),
    ("I would like to know", "how far away the moon is."),
    ("Can you tell me", "what time it is in Tokyo?"),
    ("How many legs", "does a spider have?"),
    ("Could you please explain", "why the sky is blue?"),
    ("What should I cook for", "dinner tonight?"),
    ("Tell me", "a short story about a cat."),
    ("Which planet", "is the largest in our solar system?"),
]
VOICES = [("en-us", 150), ("en-gb", 130), ("en-us+f3", 170), ("en-us+m3", 140)]
PAUSES_MS = [400, 700, 1000, 1200]
CHUNK = SAMPLE_RATE // 10


class NoTranscript:
    def transcribe(self, audio: np.ndarray, prompt: str = "") -> WindowResult:
        return WindowResult([], 0.0)


class SameWindows:
    """Whisper, remembering its windows: each eagerness sees the same windows of the same clips."""

    def __init__(self, asr: WhisperASR) -> None:
        self._asr = asr
        self._seen: dict[tuple[int, bytes, str], WindowResult] = {}

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> WindowResult:
        key = (len(audio), audio[-SAMPLE_RATE:].tobytes(), prompt)
        if key not in self._seen:
            self._seen[key] = self._asr.transcribe(audio, prompt)
        return self._seen[key]


class TimedSentences:
    def __init__(self, model: SentenceEndModel) -> None:
        self.model = model
        self.seconds: list[float] = []

    def score(self, text: str) -> float:
        started = time.perf_counter()
        s = self.model.score(text)
        self.seconds.append(time.perf_counter() - started)
        return s


class TimedTurns:
    def __init__(self, model: EndOfTurnModel) -> None:
        self.model = model
        self.seconds: list[float] = []

    def complete(self, audio: np.ndarray) -> float:
        started = time.perf_counter()
        p = self.model.complete(audio)
        self.seconds.append(time.perf_counter() - started)
        return p


@dataclass
class Clip:
    audio: np.ndarray
    speech_end: int  # samples
    pause: tuple[int, int] | None  # the pause's span, in samples


def _floats(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768


def _trimmed(x: np.ndarray) -> np.ndarray:
    """espeak's own silence at both ends off, so that the pause is the one put in."""
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def _voices(quick: bool) -> list[Callable[[str], np.ndarray]]:
    """Each voice: text -> 16 kHz floats, its own silence trimmed."""
    said: list[Callable[[str], np.ndarray]] = [
        partial(lambda t, v, w: _trimmed(_floats(speak(t, rate=SAMPLE_RATE, voice=v, wpm=w))), v=v, w=w)
        for v, w in (VOICES[:2] if quick else VOICES)
    ]
    settings = Settings()
    voice = Voice(*voice_files(resolve_model(settings.tts_voice, settings.models_dir)), threads=1)

    def piper(text: str, speed: float) -> np.ndarray:
        pcm = np.concatenate(list(voice.speak(text, speed)))
        return _trimmed(StreamResampler(voice.rate, SAMPLE_RATE).process(pcm).astype(np.float32) / 32768)

    return said + [partial(piper, speed=speed) for speed in ((1.0,) if quick else (0.9, 1.2))]


def _quietest(audio: np.ndarray, near: int) -> int:
    """The quietest 10 ms within 100 ms of `near`: where a pause goes between two words."""
    frame, reach = SAMPLE_RATE // 100, SAMPLE_RATE // 10
    starts = range(max(0, near - reach), min(len(audio) - frame, near + reach), frame // 2)
    return min(starts, key=lambda i: float(np.mean(audio[i : i + frame] ** 2))) + frame // 2


def clips(quick: bool) -> list[Clip]:
    out = []
    lead = np.zeros(SAMPLE_RATE // 2, np.float32)
    tail = np.zeros(SAMPLE_RATE * 9, np.float32)  # past the longest wait
    for v, say in enumerate(_voices(quick)):
        for n, (first, second) in enumerate(QUESTIONS[:4] if quick else QUESTIONS):
            whole = say(f"{first} {second}")
            out.append(Clip(np.concatenate([lead, whole, tail]), len(lead) + len(whole), None))
            cut = _quietest(whole, len(say(first)))
            pause = np.zeros(PAUSES_MS[(n + v) % len(PAUSES_MS)] * SAMPLE_RATE // 1000, np.float32)
            start = len(lead) + cut
            audio = np.concatenate([lead, whole[:cut], pause, whole[cut:], tail])
            out.append(Clip(audio, len(lead) + len(pause) + len(whole), (start, start + len(pause))))
    return out


def run_clip(processor: StreamProcessor, clip: Clip, config: TurnConfig) -> list[int]:
    """The sample offsets at which turns were committed."""
    state, audio, commits = StreamState(), np.zeros(0, np.float32), []
    for i in range(0, len(clip.audio), CHUNK):
        chunk = clip.audio[i : i + CHUNK]
        pcm = (chunk * 32767).astype("<i2").tobytes()
        result = processor.run(state, audio, [(f"{i + 1}-0", AudioAppend(samples=len(chunk)), pcm)], config)
        state, audio = result.state, result.audio
        commits += [i + len(chunk) for e in result.events if isinstance(e, AudioCommitted)]
    return commits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the set")
    parser.add_argument("--skip-barge-in", action="store_true", help="leave out the part through the service")
    args = parser.parse_args()
    settings = Settings()
    model = EndOfTurnModel(
        resolve_model(settings.turn_model, settings.models_dir, wheels_dir=settings.wheels_dir).path, threads=1
    )
    sentences = SentenceEndModel(
        resolve_model(settings.turn_text_model, settings.models_dir, wheels_dir=settings.wheels_dir).path, threads=1
    )
    asr = SameWindows(
        WhisperASR(resolve_model(settings.asr_model, settings.models_dir).path, threads=1, compute_type="int8")
    )
    spoken = clips(args.quick)
    paused = sum(c.pause is not None for c in spoken)
    print(f"{len(spoken)} clips ({paused} with a pause)\n")
    eagerness = ("high", "medium", "low")
    settings_list: list[tuple[str, TurnDetection, bool]] = [
        ("server_vad (500 ms)", ServerVad(), False),
        ("server_vad (1200 ms)", ServerVad(silence_duration_ms=1200), False),
        *((f"semantic_vad {e}, sound only", SemanticVad(type="semantic_vad", eagerness=e), False) for e in eagerness),
        *((f"semantic_vad {e}, and words", SemanticVad(type="semantic_vad", eagerness=e), True) for e in eagerness),
    ]
    print("| turn detection | paused sentences cut | commit delay p50 | p95 | models per ask (sound + words) |")
    print("|---|---|---|---|---|")
    for name, vad, words in settings_list:
        turns, judge = TimedTurns(model), TimedSentences(sentences)
        transcriber: Transcriber = asr if words else NoTranscript()
        processor = StreamProcessor(transcriber, SileroVad(), turns, judge if words else None)
        config = TurnConfig(
            vad=vad, turn_threshold=settings.turn_threshold, text_threshold=settings.turn_text_threshold
        )
        cut, delays = 0, []
        for clip in spoken:
            commits = run_clip(processor, clip, config)
            if clip.pause is not None and any(clip.pause[0] < c <= clip.pause[1] + CHUNK for c in commits):
                cut += 1
            after = [c for c in commits if c >= clip.speech_end]
            if after:
                delays.append((after[0] - clip.speech_end) / SAMPLE_RATE)
        ask = statistics.median(turns.seconds) * 1000 if turns.seconds else 0.0
        scored = statistics.median(judge.seconds) * 1000 if judge.seconds else 0.0
        extra = (ask + scored) / 1000  # the decision waits for the models once
        p50 = statistics.median(delays) + extra
        p95 = sorted(delays)[max(0, round(0.95 * len(delays)) - 1)] + extra
        share = f"{cut}/{paused} ({cut / paused:.0%})"
        print(f"| {name} | {share} | {p50 * 1000:.0f} ms | {p95 * 1000:.0f} ms | {ask:.0f} + {scored:.0f} ms |")
    if not args.skip_barge_in:
        barge_in(args.quick)


# --- speech over a spoken reply: backchannels and real interruptions, through the running service ---

BACKCHANNELS = ["uh-huh", "yeah", "okay", "hmm", "right", "I see", "got it", "sure"]
INTERRUPTIONS = [
    "Wait, stop.",
    "Hold on, I have a question.",
    "No, that is wrong.",
    "Actually, tell me about Paris instead.",
    "Stop please.",
    "Sorry, can you repeat that?",
    "Excuse me, what time is it?",
    "Let me ask something else.",
]


async def _over_a_reply(ws_url: str, pcm: bytes) -> tuple[bool, float]:
    """Say `pcm` (24 kHz) over a long spoken reply: (interrupted, seconds from the speech to the cancel)."""
    import base64
    import json

    import websockets

    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.recv()
        session = {"type": "realtime", "output_modalities": ["audio"], "temperature": 0, "max_output_tokens": 300}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": LONG_REPLY}]}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        while json.loads(await ws.recv())["type"] != "response.output_audio.delta":
            pass
        step = 4800  # 100 ms
        sent_at = 0.0

        async def send() -> None:
            nonlocal sent_at
            for i in range(0, len(pcm), step):
                if i >= LEAD_SAMPLES and not sent_at:
                    sent_at = time.perf_counter()
                chunk = base64.b64encode(pcm[i * 2 : (i + step) * 2]).decode()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
                await asyncio.sleep(0.1)

        sender = asyncio.create_task(send())
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 120))
            if event["type"] == "response.done":
                ended = time.perf_counter()
                break
        await sender
        cancelled = event["response"]["status"] == "cancelled"
        return cancelled, ended - sent_at


LONG_REPLY = "Count from 1 to 200, one number per line."
LEAD_SAMPLES = 24000 * 3 // 10


def barge_in(quick: bool) -> None:
    from bench.stack import bench_stack
    from shared.config import SMALL_DECODER_MODEL

    voices = VOICES[:2] if quick else VOICES
    cases = [(text, False, v) for text in BACKCHANNELS for v in voices]
    cases += [(text, True, v) for text in INTERRUPTIONS for v in voices]
    if quick:
        cases = cases[::2]
    wrongly, missed, delays = 0, 0, []
    with bench_stack({"decode": 1, "audio": 1, "speech": 1}, decoder_model=SMALL_DECODER_MODEL) as stack:
        for text, meant, (voice, wpm) in cases:
            pcm = bytes(2 * LEAD_SAMPLES) + speak(text, voice=voice, wpm=wpm) + bytes(2 * 36000)
            interrupted, took = asyncio.run(_over_a_reply(stack.ws, pcm))
            if interrupted != meant:
                print(f"  {'missed' if meant else 'interrupted by'}: {text!r} ({voice}, {wpm} wpm)")
            if interrupted and not meant:
                wrongly += 1
            if meant and not interrupted:
                missed += 1
            if meant and interrupted:
                delays.append(took)
    n_back = sum(not m for _, m, _ in cases)
    n_meant = len(cases) - n_back
    print(f"\n## Speech over a spoken reply ({len(cases)} cases, barge_in_min_speech_ms default)\n")
    print("| backchannels that interrupted | real interruptions missed | speech start to cancel, p50 / p95 |")
    print("|---|---|---|")
    p95 = sorted(delays)[max(0, round(0.95 * len(delays)) - 1)] if delays else 0.0
    p50 = statistics.median(delays) if delays else 0.0
    print(f"| {wrongly}/{n_back} ({wrongly / n_back:.0%}) | {missed}/{n_meant} | {p50:.2f} s / {p95:.2f} s |")


if __name__ == "__main__":
    main()
