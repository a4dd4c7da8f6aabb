"""Many realtime sessions at once for a fixed time; then the same with one more worker of each kind.

One stack (one decoder, audio and image worker, the gateway; default settings) on a private Redis.
`--sessions` websocket sessions are held open for `--duration` seconds, each taking turns with a
pause between them: a text question and a reply of at most `--max-tokens` tokens. A share of the
sessions (`--media-share`) also speaks: every other turn of theirs is a spoken question (PCM16 at
24 kHz appended in 100 ms chunks, then committed), and every turn of theirs first sends a camera
frame. When the time is up no new turn starts; the replies under way get `--grace` seconds more.
Then one more worker of each kind is started and the same load runs again.

Printed for each run: sessions held (open from start to end), turns completed, errors (`error`
events and failed replies, by code), lost replies and time to first token (from `response.create`
to the first text delta) percentiles, and the ratios between the runs. A reply is lost when its
`response.create` got no `response.done` by the end of the grace period, or when its
`response.done` is neither completed nor incomplete and says no reason or error; there must be none.
Also printed: how busy the machine's cores were during each run (from /proc/stat).

    python -m bench.load [--sessions 16] [--duration 60] [--media-share 0.25] [--think 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import websockets

from bench.stack import BenchStack, bench_stack

QUESTIONS = [
    "What is the capital of France?",
    "Name a primary colour.",
    "What is 7 times 8?",
    "Which planet is called the red planet?",
    "Give one word that rhymes with cat.",
]
SPOKEN = "What is the capital of Italy?"
NO_VAD = {"type": "realtime", "temperature": 0, "audio": {"input": {"turn_detection": None}}}


@dataclass
class Tally:
    """What one run saw, over all its sessions."""

    sessions: int = 0
    held: int = 0
    turns: Counter[str] = field(default_factory=Counter)  # completed turns by kind (text, speech)
    frames: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by code
    lost: int = 0
    ttft: dict[str, list[float]] = field(default_factory=lambda: {"text": [], "speech": []})
    cpu_busy: float = float("nan")  # share of all cores' time not idle during the run (whole machine)


@dataclass(frozen=True)
class Media:
    frames: list[str]  # data URLs of camera frames
    speech: list[str]  # base64 chunks of 100 ms of PCM16 at 24 kHz


class Session:
    """One websocket session taking turns until `stop_at`; everything it sees goes into `tally`."""

    def __init__(self, url: str, index: int, media: Media | None, tally: Tally, think_s: float, max_tokens: int):
        self.url, self.index, self.media, self.tally = url, index, media, tally
        self.think_s, self.max_tokens = think_s, max_tokens
        self.open_create: float | None = None  # a response.create not yet answered by response.done

    async def run(self, stop_at: float, give_up_at: float) -> None:
        self.tally.sessions += 1
        try:
            async with websockets.connect(self.url, max_size=None, open_timeout=30) as ws:
                await self._recv(ws, give_up_at)  # session.created
                await ws.send(json.dumps({"type": "session.update", "session": NO_VAD}))
                await self._until(ws, "session.updated", give_up_at)
                turn = 0
                while time.monotonic() < stop_at:
                    await self._turn(ws, turn, give_up_at)
                    turn += 1
                    await asyncio.sleep(self.think_s)
                self.tally.held += 1
        except (TimeoutError, websockets.ConnectionClosed, OSError) as exc:
            self.tally.errors[f"session:{type(exc).__name__}"] += 1
        if self.open_create is not None:
            self.tally.lost += 1

    async def _turn(self, ws: Any, turn: int, give_up_at: float) -> None:
        kind = "speech" if self.media is not None and turn % 2 == 1 else "text"
        if self.media is not None:
            frame = self.media.frames[(self.index + turn) % len(self.media.frames)]
            content = [{"type": "input_image", "image_url": frame}]
            await ws.send(json.dumps({"type": "conversation.item.create", "item": _message(content)}))
            self.tally.frames += 1
        if kind == "speech":
            assert self.media is not None
            for chunk in self.media.speech:
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        else:
            text = QUESTIONS[(self.index + turn) % len(QUESTIONS)]
            await ws.send(json.dumps({"type": "conversation.item.create", "item": _message([_text(text)])}))
        created = time.perf_counter()
        self.open_create = created
        response = {"max_output_tokens": self.max_tokens}
        await ws.send(json.dumps({"type": "response.create", "response": response}))
        first: float | None = None
        while True:
            event = await self._recv(ws, give_up_at)
            if event["type"] == "response.output_text.delta" and first is None:
                first = time.perf_counter() - created
            elif event["type"] == "response.done":
                self.open_create = None
                self._done(event["response"], kind, first)
                return

    def _done(self, response: dict[str, Any], kind: str, first: float | None) -> None:
        status, details = response["status"], response.get("status_details") or {}
        if status in ("completed", "incomplete"):
            self.tally.turns[kind] += 1
            if first is not None:
                self.tally.ttft[kind].append(first)
        elif details.get("error") or details.get("reason"):
            code = (details.get("error") or {}).get("code") or details.get("reason")
            self.tally.errors[f"{status}:{code}"] += 1
        else:
            self.tally.lost += 1  # ended without saying why

    async def _until(self, ws: Any, kind: str, give_up_at: float) -> None:
        while (await self._recv(ws, give_up_at))["type"] != kind:
            pass

    async def _recv(self, ws: Any, give_up_at: float) -> dict[str, Any]:
        left = give_up_at - time.monotonic()
        if left <= 0:
            raise TimeoutError
        event: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), left))
        if event["type"] == "error":
            self.tally.errors[event["error"].get("code") or "error"] += 1
        return event


def _message(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": content}


def _text(text: str) -> dict[str, str]:
    return {"type": "input_text", "text": text}


def _media() -> Media:
    from tests.pictures import data_url, picture
    from tests.speech import chunks_b64, silence, speak

    frames = [data_url(picture(shape, colour)) for shape, colour in (("circle", "red"), ("square", "blue"))]
    return Media(frames=frames, speech=chunks_b64(silence(0.2) + speak(SPOKEN) + silence(0.3)))


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat (Linux); zeros elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def _run(stack: BenchStack, args: argparse.Namespace, media: Media) -> tuple[Tally, float]:
    tally = Tally()
    busy0, total0 = _cpu_times()
    with_media = round(args.sessions * args.media_share)
    started = time.monotonic()
    stop_at = started + args.duration
    sessions = [
        Session(stack.ws, i, media if i < with_media else None, tally, args.think, args.max_tokens)
        for i in range(args.sessions)
    ]
    await asyncio.gather(*(s.run(stop_at, stop_at + args.grace) for s in sessions))
    busy1, total1 = _cpu_times()
    tally.cpu_busy = (busy1 - busy0) / (total1 - total0) if total1 > total0 else float("nan")
    return tally, time.monotonic() - started


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _report(runs: list[tuple[str, Tally, float]], duration: float) -> None:
    def row(name: str, cells: list[str], ratio: str = "") -> None:
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")

    print("\n| | " + " | ".join(name for name, _, _ in runs) + " | ratio |")
    print("|---|" + "---:|" * (len(runs) + 1))
    (_, a, _), (_, b, _) = runs[0], runs[-1]
    row("sessions held", [f"{t.held} / {t.sessions}" for _, t, _ in runs])
    ta, tb = sum(a.turns.values()), sum(b.turns.values())
    row("turns completed", [str(sum(t.turns.values())) for _, t, _ in runs], f"{tb / ta:.2f}x" if ta else "")
    row("  of which spoken", [str(t.turns["speech"]) for _, t, _ in runs])
    row("camera frames sent", [str(t.frames) for _, t, _ in runs])
    row("turns per second", [f"{sum(t.turns.values()) / duration:.2f}" for _, t, _ in runs])
    row("errors", [", ".join(f"{k}: {v}" for k, v in t.errors.items()) or "0" for _, t, _ in runs])
    row("lost replies", [str(t.lost) for _, t, _ in runs])
    for kind in ("text", "speech"):
        for q in (50, 90, 99):
            va, vb = _pct(a.ttft[kind], q), _pct(b.ttft[kind], q)
            cells = [f"{_pct(t.ttft[kind], q):.2f}" for _, t, _ in runs]
            row(f"TTFT {kind} p{q} (s)", cells, f"{vb / va:.2f}x" if va == va and vb == vb and va else "")
    row("CPU busy (all cores, whole machine)", [f"{t.cpu_busy:.0%}" for _, t, _ in runs])
    print("\nwall time of each run (s): " + ", ".join(f"{w:.1f}" for _, _, w in runs))


async def _main(args: argparse.Namespace) -> None:
    media = await asyncio.to_thread(_media)
    with bench_stack({"decode": 1, "audio": 1, "image": 1}) as stack:
        runs = []
        first, wall = await _run(stack, args, media)
        runs.append(("1 worker of each kind", first, wall))
        for kind in ("decode", "audio", "image"):
            stack.add_worker(kind)
        await asyncio.to_thread(stack.wait_ready)
        second, wall = await _run(stack, args, media)
        runs.append(("2 workers of each kind", second, wall))
    print(
        f"{args.sessions} sessions ({round(args.sessions * args.media_share)} with speech and frames), "
        f"{args.duration:.0f} s each run, replies of at most {args.max_tokens} tokens, {args.think:.1f} s between turns"
    )
    _report(runs, args.duration)
    if any(t.lost for _, t, _ in runs):
        raise SystemExit("lost replies: there must be none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load per run")
    parser.add_argument("--media-share", type=float, default=0.25, help="share of sessions with speech and frames")
    parser.add_argument("--think", type=float, default=1.0, help="seconds a session waits between turns")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--grace", type=float, default=60.0, help="seconds replies under way get after the run")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
