"""`mmstream eval`: the held-out question set, answered through the running service, scored per mode.

Each question is asked in a fresh `/v1/realtime` session at temperature 0, once per condition:
the fusion modes `text`, `embed` and `both`, and single-modality baselines with the picture or the
speech left out. An answer counts as the first label of the question's set that it names.
Accuracy, macro recall and macro F1 are printed per modality and group and saved as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import websockets

from cli.eval_set import Question, question_set

INSTRUCTIONS = "You are a helpful assistant. The user's pictures and speech are in their message. Answer briefly."
# Condition -> (fusion mode, send the picture, send the speech).
CONDITIONS: dict[str, tuple[str, bool, bool]] = {
    "text": ("text", True, True),
    "embed": ("embed", True, True),
    "both": ("both", True, True),
    "no picture": ("text", False, True),
    "no speech": ("text", True, False),
}
_ANSWER_TIMEOUT_S = 120.0
_SYNONYMS = {"grey": "gray", "centre": "center", "middle": "center", "1": "one", "2": "two", "3": "three"}


@dataclass(frozen=True)
class Scores:
    n: int
    accuracy: float
    macro_recall: float
    macro_f1: float


def conditions_for(question: Question) -> list[str]:
    baselines = {"image": ["no picture"], "audio": ["no speech"], "image+audio": ["no picture", "no speech"]}
    return ["text", "embed", "both", *baselines[question.modality]]


def predicted_label(answer: str, labels: Iterable[str]) -> str | None:
    """The label the answer names first (plurals and a few synonyms count), or None."""
    text = answer.lower()
    for word, label in _SYNONYMS.items():
        text = re.sub(rf"\b{re.escape(word)}\b", label, text)
    found = []
    for label in labels:
        if m := re.search(rf"\b{re.escape(label)}(e?s)?\b", text):
            found.append((m.start(), label))
    return min(found)[1] if found else None


def score(pairs: list[tuple[str, str | None]], labels: Iterable[str]) -> Scores:
    """Accuracy, and recall and F1 averaged over the labels that occur as answers."""
    truths = {t for t, _ in pairs}
    recalls, f1s = [], []
    for label in sorted(set(labels) & truths):
        tp = sum(t == label and p == label for t, p in pairs)
        fn = sum(t == label and p != label for t, p in pairs)
        fp = sum(t != label and p == label for t, p in pairs)
        recall = tp / (tp + fn) if tp + fn else 0.0
        precision = tp / (tp + fp) if tp + fp else 0.0
        recalls.append(recall)
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    n = len(pairs)
    accuracy = sum(t == p for t, p in pairs) / n if n else 0.0
    return Scores(
        n, round(accuracy, 4), round(sum(recalls) / max(len(recalls), 1), 4), round(sum(f1s) / max(len(f1s), 1), 4)
    )


def _content(question: Question, picture: bool, speech: bool) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if picture and question.picture is not None:
        url = "data:image/png;base64," + base64.b64encode(question.picture).decode()
        parts.append({"type": "input_image", "image_url": url})
    if speech and question.speech is not None:
        parts.append({"type": "input_audio", "audio": base64.b64encode(question.speech).decode()})
    if question.text:
        parts.append({"type": "input_text", "text": question.text})
    return parts


async def ask(url: str, question: Question, condition: str, headers: dict[str, str] | None = None) -> str:
    mode, picture, speech = CONDITIONS[condition]
    async with websockets.connect(url, max_size=None, additional_headers=headers) as ws:
        session = {"type": "realtime", "instructions": INSTRUCTIONS, "temperature": 0.0, "fusion": mode}
        session["max_output_tokens"] = 48
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        item = {"type": "message", "role": "user", "content": _content(question, picture, speech)}
        await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        await ws.send(json.dumps({"type": "response.create"}))
        async with asyncio.timeout(_ANSWER_TIMEOUT_S):
            async for raw in ws:
                event = json.loads(raw)
                if event["type"] == "response.done":
                    output = event["response"]["output"]
                    return str(output[0]["content"][0]["text"]) if output and output[0]["content"] else ""
                if event["type"] == "error" and event["error"].get("code") != "image_dropped":
                    raise RuntimeError(f"{question.id} ({condition}): {event['error']['message']}")
    raise RuntimeError("the connection closed before the response was done")


async def run_eval(
    url: str, questions: list[Question], *, concurrency: int = 2, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)
    results: list[dict[str, Any]] = []

    async def one(question: Question, condition: str) -> None:
        async with gate:
            answer = await ask(url, question, condition, headers)
        results.append(
            {
                "id": question.id,
                "modality": question.modality,
                "group": question.group,
                "condition": condition,
                "answer": answer,
                "truth": question.answer,
                "predicted": predicted_label(answer, question.labels),
            }
        )

    await asyncio.gather(*(one(q, c) for q in questions for c in conditions_for(q)))
    return results


def summarise(questions: list[Question], results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Scores]]]:
    """modality -> group ("all" included) -> condition -> scores."""
    labels = {q.id: q.labels for q in questions}
    pairs: dict[tuple[str, str, str], list[tuple[str, str | None]]] = defaultdict(list)
    label_sets: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in results:
        for group in (r["group"], "all"):
            pairs[(r["modality"], group, r["condition"])].append((r["truth"], r["predicted"]))
            label_sets[(r["modality"], group)].update(labels[r["id"]])
    out: dict[str, dict[str, dict[str, Scores]]] = defaultdict(lambda: defaultdict(dict))
    for (modality, group, condition), got in sorted(pairs.items()):
        out[modality][group][condition] = score(got, label_sets[(modality, group)])
    return out


def evaluate(
    url: str, *, seed: int, per_group: int, out: Path, speech: bool = True, headers: dict[str, str] | None = None
) -> int:
    questions = question_set(seed, per_group, speech=speech)
    started = time.monotonic()
    results = asyncio.run(run_eval(url, questions, headers=headers))
    summary = summarise(questions, results)
    print(f"{len(questions)} questions, {len(results)} answers in {time.monotonic() - started:.0f} s")
    for modality, groups in summary.items():
        for group, conditions in groups.items():
            row = "  ".join(
                f"{c}: {s.accuracy:.2f}/{s.macro_recall:.2f}/{s.macro_f1:.2f}" for c, s in conditions.items()
            )
            print(f"{modality:12s} {group:14s} (accuracy/recall/F1)  {row}")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "seed": seed,
        "per_group": per_group,
        "summary": {m: {g: {c: asdict(x) for c, x in cs.items()} for g, cs in gs.items()} for m, gs in summary.items()},
        "answers": sorted(results, key=lambda r: (r["id"], r["condition"])),
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"saved {out}")
    return 0
