"""`mmstream eval --suite qa`: the general-question set (`cli/qa_set.py`) through the running service.

Each question is a fresh `/v1/realtime` session at temperature 0 with brief-answer instructions; its
turns are asked one after another in that session (a follow-up needs the turn before), and the answer to
the last turn is scored. Spoken questions are espeak-ng speech in an `input_audio` part, so they also
measure the audio worker. Accuracy per group is printed and everything saved as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import websockets

from cli.qa_set import QA, qa_set

INSTRUCTIONS = "You are a helpful assistant. Answer briefly."
_ANSWER_TIMEOUT_S = 180.0


def is_right(answer: str, accepted: tuple[str, ...]) -> bool:
    """Whether the answer names one of the accepted answers as a whole word or phrase."""
    text = answer.lower()
    return any(re.search(rf"(?<!\w){re.escape(a.lower())}(?!\w)", text) for a in accepted)


async def _turn(ws: Any, content: list[dict[str, Any]]) -> str:
    await ws.send(
        json.dumps(
            {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": content}}
        )
    )
    await ws.send(json.dumps({"type": "response.create"}))
    async for raw in ws:
        event = json.loads(raw)
        if event["type"] == "response.done":
            output = event["response"]["output"]
            return str(output[0]["content"][0]["text"]) if output and output[0]["content"] else ""
        if event["type"] == "error":
            raise RuntimeError(event["error"]["message"])
    raise RuntimeError("the connection closed before the response was done")


async def ask(url: str, qa: QA, headers: dict[str, str] | None = None) -> tuple[str, str]:
    """The answer to the question's last turn, and the model that gave it."""
    async with websockets.connect(url, max_size=None, additional_headers=headers) as ws:
        created = json.loads(await ws.recv())
        session: dict[str, Any] = {
            "type": "realtime",
            "instructions": INSTRUCTIONS,
            "temperature": 0.0,
            "max_output_tokens": 48,
        }
        if qa.fusion is not None:
            session["fusion"] = qa.fusion
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        answer = ""
        async with asyncio.timeout(_ANSWER_TIMEOUT_S):
            for i, text in enumerate(qa.turns):
                if qa.spoken and i == len(qa.turns) - 1:
                    from training.speech import speak  # espeak-ng; only the spoken group needs it

                    pcm = await asyncio.to_thread(speak, text)
                    content = [{"type": "input_audio", "audio": base64.b64encode(pcm).decode()}]
                else:
                    content = [{"type": "input_text", "text": text}]
                answer = await _turn(ws, content)
        return answer, str(created["session"]["model"])


async def run_qa(
    url: str, questions: list[QA], *, concurrency: int = 1, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(qa: QA) -> dict[str, Any]:
        async with gate:
            answer, model = await ask(url, qa, headers)
        right = is_right(answer, qa.answers)
        return {"id": qa.id, "group": qa.group, "model": model, "turns": list(qa.turns), "answer": answer,
                "expected": qa.answers[0], "right": right}  # fmt: skip

    return list(await asyncio.gather(*(one(q) for q in questions)))


def accuracy_by_group(results: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """group ("all" included) -> (right, asked)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        for group in (r["group"], "all"):
            counts[group][0] += bool(r["right"])
            counts[group][1] += 1
    return {g: (c[0], c[1]) for g, c in counts.items()}


def evaluate_qa(url: str, *, out: Path, speech: bool = True, headers: dict[str, str] | None = None) -> int:
    questions = qa_set(speech=speech)
    started = time.monotonic()
    results = asyncio.run(run_qa(url, questions, headers=headers))
    model = results[0]["model"] if results else "?"
    print(f"{model}: {len(questions)} questions in {time.monotonic() - started:.0f} s")
    groups = accuracy_by_group(results)
    for group, (right, asked) in sorted(groups.items(), key=lambda kv: kv[0] == "all"):
        print(f"  {group:12s} {right:3d} / {asked:3d}  {right / asked:.2f}")
    for r in results:
        if not r["right"]:
            print(f"  wrong {r['id']}: {r['turns'][-1]!r} -> {r['answer'][:80]!r} (expected {r['expected']})")
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {g: {"right": r, "asked": a, "accuracy": round(r / a, 4)} for g, (r, a) in groups.items()}
    out.write_text(json.dumps({"model": model, "summary": summary, "answers": results}, indent=1) + "\n")
    print(f"saved {out}")
    return 0
