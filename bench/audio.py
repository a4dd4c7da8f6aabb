"""Streaming transcription: latency of live transcripts and accuracy against offline transcription.

Passages spoken by espeak-ng are streamed in real time (100 ms chunks of 24 kHz PCM16) over
/v1/realtime with client commits (turn_detection null), through a real gateway, Redis and audio
worker. For each word, latency is the time from the arrival of the chunk that holds the end of the
word to the transcription delta that carries it. Where a word ends comes from the synthesiser, not
from a recogniser: espeak-ng speaks each prefix of the passage, and the end of its speech is the
end of the prefix's last word (slightly late, by the lengthening of a final syllable, which makes
the latency look a little better than it is). Accuracy: word error rate against the passage text,
for the streamed final transcript and for faster-whisper `transcribe()` on the whole clip offline
(same model), in one run, for each speech model.

    python -m bench.audio [--models bundled:whisper-tiny.en bundled:whisper-base]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import websockets

from bench.stack import bench_stack
from shared.config import Settings
from shared.models import resolve_model
from shared.pcm import StreamResampler
from tests.speech import chunks_b64, silence, speak

PASSAGES = [
    "Please send the quarterly report to finance by Friday. We will discuss it in the meeting.",
    "The weather today is sunny with a light breeze. Tomorrow it will rain in the afternoon.",
    "My favourite book is about a sailor who crosses the ocean alone. It took him three months.",
    "Turn left at the second traffic light, then keep going until you reach the old church.",
    "Our team shipped the new version last week. Customers say it is faster and easier to use.",
    # Questions of the kind a person asks the assistant (the spoken group of `mmstream eval --suite qa`).
    "What is the capital city of Italy?",
    "What is the capital of France?",
    "How many legs does a spider have?",
    "Which planet is known as the Red Planet?",
    "What colour do you get by mixing blue and yellow?",
    "Which organ pumps blood through the human body?",
]
CHUNK_MS = 100


def norm_words(text: str) -> list[str]:
    return re.sub(r"[^\w' ]+", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = norm_words(reference), norm_words(hypothesis)
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


async def stream_passage(url: str, pcm24: bytes) -> tuple[list[float], list[tuple[float, str]], str]:
    """Send in real time; return chunk send times, (receive time, delta) pairs, final transcript."""
    sent: list[float] = []
    deltas: list[tuple[float, str]] = []
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "audio": {"input": {"turn_detection": None}}},
                }
            )
        )

        async def sender() -> None:
            start = time.perf_counter()
            for i, chunk in enumerate(chunks_b64(pcm24, ms=CHUNK_MS)):
                await asyncio.sleep(max(0.0, start + i * CHUNK_MS / 1000 - time.perf_counter()))
                sent.append(time.perf_counter())
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))

        task = asyncio.create_task(sender())
        while True:
            event = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if event["type"] == "conversation.item.input_audio_transcription.delta":
                deltas.append((time.perf_counter(), event["delta"]))
            elif event["type"] == "conversation.item.input_audio_transcription.completed":
                await task
                return sent, deltas, event["transcript"]
            elif event["type"] == "error":
                raise RuntimeError(event["error"])


def word_ends(passage: str, lead_s: float) -> list[tuple[str, float]]:
    """(word, second its speech ends) for each word of the passage, from espeak-ng prefixes."""
    words = passage.split()
    out = []
    for i in range(1, len(words) + 1):
        pcm = np.frombuffer(speak(" ".join(words[:i])), dtype="<i2")
        loud = np.nonzero(np.abs(pcm.astype(np.int32)) > 300)[0]
        end = lead_s + (loud[-1] / 24000 if len(loud) else 0.0)
        out += [(w, end) for w in norm_words(words[i - 1])]
    return out


def word_latencies(
    sent: list[float], deltas: list[tuple[float, str]], aligned: list[tuple[str, float]], commit_time: float
) -> list[float]:
    """Latency of each streamed word that matches a word of the passage: (word, end second) pairs."""
    streamed: list[tuple[str, float]] = []
    for t, delta in deltas:
        streamed += [(w, t) for w in norm_words(delta)]
    ref_words = [w for w, _ in aligned]
    out = []
    matcher = SequenceMatcher(None, ref_words, [w for w, _ in streamed], autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            _, end_s = aligned[block.a + k]
            _, got = streamed[block.b + k]
            chunk = min(int(end_s * 1000 // CHUNK_MS), len(sent) - 1)
            if got <= commit_time:  # words sent live, not those the commit flushed
                out.append(got - sent[chunk])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio-threads", default="1")
    parser.add_argument("--models", nargs="+", default=["bundled:whisper-tiny.en", "bundled:whisper-base"])
    args = parser.parse_args()
    lead_s = 0.3
    clips = [silence(lead_s) + speak(p) + silence(0.5) for p in PASSAGES]
    alignments = [word_ends(p, lead_s) for p in PASSAGES]
    rows = [_run(spec, clips, alignments, args.audio_threads) for spec in args.models]
    print("\n| speech model | live words | latency median / p90 (s) | WER streamed | WER offline | difference |")
    print("|---|---:|---:|---:|---:|---:|")
    for spec, n, median, p90, w_stream, w_offline in rows:
        print(
            f"| {spec} | {n} | {median:.3f} / {p90:.3f} | {w_stream:.1f} % | {w_offline:.1f} % "
            f"| {w_stream - w_offline:+.1f} |"
        )


def _run(
    spec: str, clips: list[bytes], alignments: list[list[tuple[str, float]]], audio_threads: str
) -> tuple[str, int, float, float, float, float]:
    settings = Settings()
    model = resolve_model(spec, settings.models_dir)

    from faster_whisper import WhisperModel

    offline = WhisperModel(str(model.path), device="cpu", compute_type="int8", cpu_threads=2)
    offline_text = []
    for pcm in clips:
        audio16 = StreamResampler(24000, 16000).process(np.frombuffer(pcm, "<i2")).astype(np.float32) / 32768
        segments, _ = offline.transcribe(audio16, language="en")
        offline_text.append(" ".join(s.text.strip() for s in segments))
    del offline

    latencies, streamed_text = [], []
    with bench_stack({"decode": 1, "audio": 1}, audio_threads=audio_threads, asr_model=spec) as stack:
        for pcm, aligned in zip(clips, alignments, strict=True):
            sent, deltas, transcript = asyncio.run(stream_passage(stack.ws, pcm))
            latencies += word_latencies(sent, deltas, aligned, commit_time=sent[-1])
            streamed_text.append(transcript)

    w_stream = statistics.mean(wer(p, t) for p, t in zip(PASSAGES, streamed_text, strict=True)) * 100
    w_offline = statistics.mean(wer(p, t) for p, t in zip(PASSAGES, offline_text, strict=True)) * 100
    lat = sorted(latencies)
    print(
        f"model {Path(model.path).name}  passages {len(PASSAGES)}  chunk {CHUNK_MS} ms  audio threads {audio_threads}"
    )
    q = [lat[int(f * (len(lat) - 1))] for f in (0.1, 0.25, 0.5, 0.75, 0.9)]
    print(
        f"live words {len(lat)}: latency chunk arrival -> delta  median {statistics.median(lat):.3f} s  "
        f"(p10 {q[0]:.3f}  p25 {q[1]:.3f}  p75 {q[3]:.3f}  p90 {q[4]:.3f})   (goal: median <= 0.5 s)"
    )
    print(
        f"WER streamed final {w_stream:.1f}%   offline whole clip {w_offline:.1f}%   "
        f"difference {w_stream - w_offline:+.1f} points   (goal: <= +2)"
    )
    for passage, s, o in zip(PASSAGES, streamed_text, offline_text, strict=True):
        print(f"  truth:    {passage}\n  streamed: {s}\n  offline:  {o}")
    return spec, len(lat), statistics.median(lat), q[4], w_stream, w_offline


if __name__ == "__main__":
    main()
