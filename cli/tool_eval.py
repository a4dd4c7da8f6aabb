"""`mmstream eval --suite tools`: the function-calling set (`cli/tool_set.py`) against any OpenAI-compatible
server (mmstream's `/v1`, or llama-server's as the anchor), scored by exact match.

Each case is one `/v1/chat/completions` request at temperature 0, four at a time. A call counts as right
when the reply's only tool call has the expected name and arguments; a case that wants no call is right
when the reply calls nothing and says something (after a tool result: what it returned). A reply whose
text holds what looks like a call (`"name"`) is a call the server did not recognise: never right. Every
call's arguments are also checked: do they parse, do they validate against the function's schema.
Printed per kind and saved as JSON.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import jsonschema
from openai import AsyncOpenAI

from cli.tool_set import FUNCTIONS, Expected, ToolCase, tool_set

_CONCURRENCY = 4
_MAX_TOKENS = 160


def same_value(got: Any, want: Any) -> bool:
    if isinstance(want, str):
        return isinstance(got, str) and got.strip().lower() == want.strip().lower()
    if isinstance(want, int | float) and not isinstance(want, bool):
        return isinstance(got, int | float) and not isinstance(got, bool) and float(got) == float(want)
    return bool(got == want)


def call_matches(name: str, arguments: Any, expected: Expected) -> bool:
    if name != expected.name or not isinstance(arguments, dict) or arguments.keys() != expected.arguments.keys():
        return False
    return all(same_value(arguments[k], v) for k, v in expected.arguments.items())


def score(case: ToolCase, calls: list[tuple[str, str]], content: str) -> dict[str, Any]:
    """One reply's record: whether it is right, and whether each call parsed and validated."""
    parsed: list[Any] = []
    valid = 0
    for name, text in calls:
        try:
            args = json.loads(text)
        except ValueError:
            parsed.append(None)
            continue
        parsed.append(args)
        if name in FUNCTIONS:
            try:
                jsonschema.validate(args, FUNCTIONS[name]["parameters"])
                valid += 1
            except jsonschema.ValidationError:
                pass
    as_text = not calls and '"name"' in content
    if case.expected is None:  # a text reply, not a call, whether the server read it as one or not
        said = content.strip().lower()
        right = not calls and not as_text and bool(said) and case.answer_has.lower() in said
    else:
        right = len(calls) == 1 and call_matches(calls[0][0], parsed[0], case.expected)
    return {
        "id": case.id,
        "kind": case.kind,
        "right": right,
        "calls": [{"name": n, "arguments": a} for n, a in calls],
        "parsed": sum(p is not None for p in parsed),
        "valid": valid,
        "content": content,
        "call_as_text": as_text,
    }


async def _ask(client: AsyncOpenAI, model: str, case: ToolCase, gate: asyncio.Semaphore) -> dict[str, Any]:
    messages: Any = case.messages  # the SDK's typed dicts, as plain ones
    tools: Any = case.tools_param()
    async with gate:
        reply = await client.chat.completions.create(
            model=model,
            messages=messages,
            tools=tools,
            temperature=0,
            max_tokens=_MAX_TOKENS,
        )
    message = reply.choices[0].message
    calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or [] if c.type == "function"]
    return score(case, calls, message.content or "")


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        by_kind[r["kind"]].append(r["right"])
    calls = sum(len(r["calls"]) for r in records)
    return {
        "n": len(records),
        "accuracy": sum(r["right"] for r in records) / max(len(records), 1),
        "by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())},
        "calls": calls,
        "parse_rate": sum(r["parsed"] for r in records) / calls if calls else 1.0,
        "valid_rate": sum(r["valid"] for r in records) / calls if calls else 1.0,
        "calls_as_text": sum(r["call_as_text"] for r in records),
    }


async def run_tool_eval(base_url: str, model: str, *, headers: dict[str, str] | None = None) -> dict[str, Any]:
    cases = tool_set()
    gate = asyncio.Semaphore(_CONCURRENCY)
    started = time.perf_counter()
    async with AsyncOpenAI(
        base_url=base_url, api_key="not-needed", max_retries=0, timeout=300, default_headers=headers
    ) as client:
        records = await asyncio.gather(*(_ask(client, model, case, gate) for case in cases))
    return {"summary": summary(records), "seconds": round(time.perf_counter() - started, 1), "records": records}


def evaluate_tools(base_url: str, model: str, *, out: Path, headers: dict[str, str] | None = None) -> int:
    result = asyncio.run(run_tool_eval(base_url, model, headers=headers))
    out.write_text(json.dumps(result, indent=2))
    s = result["summary"]
    print(f"{s['n']} cases in {result['seconds']} s: accuracy {s['accuracy']:.1%}")
    for kind, accuracy in s["by_kind"].items():
        print(f"  {kind:13s} {accuracy:.1%}")
    print(f"  calls {s['calls']}: {s['parse_rate']:.1%} parse, {s['valid_rate']:.1%} validate")
    print(f"  replies with a call left as text: {s['calls_as_text']}")
    print(f"saved to {out}")
    return 0
