"""Speech: mmstream's whole speech path against Piper itself, the same voice, in one run.

1. `POST /v1/audio/speech`, streamed PCM, through the gateway, Redis and W speech workers: time to the
   first audio byte and to the last, for one request and for N at once. The baseline is Piper's own
   API in this process (`PiperVoice.load` with its defaults, `synthesize`), speaking the same texts:
   each text's first sentence and the end; N texts one after another, as one Piper process speaks them
   (first audio is the median over the N texts, on both sides).
2. Realtime spoken replies (with a decoder): what the voice adds to a reply, from the first transcript
   delta to the first audio delta, p50 and p95 over a few questions.

Prints ratios, mmstream over Piper (times: lower is better). Run: python -m bench.voice [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import time
from typing import Any

import httpx

from bench.stack import bench_stack
from shared.config import SMALL_DECODER_MODEL, Settings
from shared.models import resolve_model, voice_files

TEXTS = [
    "The capital of France is Paris. It lies on the river Seine, and it is known for its museums.",
    "Water boils at one hundred degrees Celsius at sea level. Higher up, it boils at a lower temperature.",
    "A week has seven days. The weekend is Saturday and Sunday, and the other five are weekdays.",
    "The sun rises in the east and sets in the west. At noon it stands highest in the sky.",
]
QUESTIONS = [
    "What is the capital of France?",
    "Why is the sky blue? Answer in two sentences.",
    "Name three fruits.",
    "How many days are in a week?",
    "What is two plus two?",
]


def piper_alone(texts: list[str], threads: int | None) -> tuple[float, float, float]:
    """Piper speaking the texts one after another: (first audio of a text s, median; total s; audio s).

    `threads` None is Piper's own default (onnxruntime's: every core); a number is what a worker uses.
    """
    from piper import PiperVoice

    settings = Settings()
    onnx, config = voice_files(resolve_model(settings.tts_voice, settings.models_dir))
    voice = PiperVoice.load(onnx, config)
    if threads is not None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        voice.session = onnxruntime.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    list(voice.synthesize("Warm up."))
    started = time.perf_counter()
    firsts, samples = [], 0
    for text in texts:
        first = 0.0
        for chunk in voice.synthesize(text):
            first = first or time.perf_counter() - started
            samples += len(chunk.audio_int16_bytes) // 2
        firsts.append(first)
    return statistics.median(firsts), time.perf_counter() - started, samples / voice.config.sample_rate


async def _speak(http: httpx.AsyncClient, text: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    first, size = 0.0, 0
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    async with http.stream("POST", "/v1/audio/speech", json=body) as reply:
        reply.raise_for_status()
        async for chunk in reply.aiter_bytes():
            first = first or time.perf_counter() - started
            size += len(chunk)
    return first, time.perf_counter() - started, size


async def mmstream_speech(url: str, texts: list[str]) -> tuple[float, float, float]:
    """The texts at once through /v1/audio/speech: (first byte s, median; last byte s, audio s)."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        await _speak(http, "Warm up.")
        started = time.perf_counter()
        results = await asyncio.gather(*(_speak(http, t) for t in texts))
        total = time.perf_counter() - started
    return statistics.median(r[0] for r in results), total, sum(r[2] for r in results) / 48000


async def voice_delay(ws_url: str) -> list[float]:
    """Per question: seconds from the first transcript delta to the first audio delta."""
    import websockets

    delays = []
    async with websockets.connect(ws_url, max_size=None) as ws:
        await ws.recv()
        session = {"type": "realtime", "output_modalities": ["audio"], "temperature": 0}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        for question in QUESTIONS:
            item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": question}]}
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            await ws.send(json.dumps({"type": "response.create"}))
            text_at = audio_at = 0.0
            while True:
                event: dict[str, Any] = json.loads(await ws.recv())
                now = time.perf_counter()
                if event["type"] == "response.output_audio_transcript.delta":
                    text_at = text_at or now
                elif event["type"] == "response.output_audio.delta":
                    audio_at = audio_at or now
                    base64.b64decode(event["delta"])
                elif event["type"] == "response.done":
                    break
            if text_at and audio_at:
                delays.append(audio_at - text_at)
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="speech workers for the N-at-once run")
    parser.add_argument("--skip-replies", action="store_true", help="leave out part 2 (needs a decoder)")
    args = parser.parse_args()

    rows = []
    for texts, workers in ((TEXTS[:1], 1), (TEXTS, 1), (TEXTS, args.workers)):
        with bench_stack({"speech": workers}, speech_threads="1") as stack:
            ours = asyncio.run(mmstream_speech(stack.http, texts))
        rows.append((len(texts), workers, ours, piper_alone(texts, None), piper_alone(texts, 1)))

    print("\n## /v1/audio/speech against Piper in-process (same voice, same texts)\n")
    print("Piper: its defaults (all cores) / one thread, as a speech worker runs it. Ratios: mmstream over Piper.\n")
    print("| texts at once | speech workers | first audio, s | ratio | all audio, s | ratio | real-time factor |")
    print("|---|---|---|---|---|---|---|")
    for n, w, (mf, mt, ma), (pf, pt, pa), (qf, qt, _) in rows:
        print(
            f"| {n} | {w} | {mf:.3f} vs {pf:.3f} / {qf:.3f} | {mf / pf:.2f}x / {mf / qf:.2f}x "
            f"| {mt:.3f} vs {pt:.3f} / {qt:.3f} | {mt / pt:.2f}x / {mt / qt:.2f}x | {mt / ma:.3f} vs {pt / pa:.3f} |"
        )

    if not args.skip_replies:
        with bench_stack({"decode": 1, "speech": 1}, decoder_model=SMALL_DECODER_MODEL) as stack:
            delays = asyncio.run(voice_delay(stack.ws))
        p95 = sorted(delays)[max(0, round(0.95 * len(delays)) - 1)]
        print(f"\n## Realtime: first audio after the first transcript delta, {len(delays)} replies (0.5B model)\n")
        print(f"p50 {statistics.median(delays):.3f} s, p95 {p95:.3f} s")


if __name__ == "__main__":
    main()
