"""`mmstream chat`: a terminal client for /v1/realtime that prints the reply as it streams.

Ctrl-C while a reply streams cancels it (`response.cancel`); Ctrl-C or Ctrl-D at the prompt quits.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import websockets

from shared.config import Settings


def chat(
    settings: Settings, *, url: str | None, instructions: str | None, temperature: float | None, once: str | None
) -> int:
    url = url or f"ws://{settings.host}:{settings.port}/v1/realtime"
    try:
        return asyncio.run(_chat(url, settings.auth_headers(), instructions, temperature, once))
    except websockets.InvalidStatus as exc:
        hint = " (it wants an API key: set MMSTREAM_API_KEY)" if exc.response.status_code in (401, 403) else ""
        print(f"cannot talk to {url}: {exc}{hint}", file=sys.stderr)
        return 1
    except (OSError, websockets.WebSocketException) as exc:
        print(f"cannot talk to {url}: {exc}", file=sys.stderr)
        return 1


async def _chat(
    url: str, headers: dict[str, str], instructions: str | None, temperature: float | None, once: str | None
) -> int:
    async with websockets.connect(url, max_size=None, additional_headers=headers) as ws:
        await _expect(ws, "session.created")
        patch: dict[str, Any] = {"type": "realtime"}
        if instructions is not None:
            patch["instructions"] = instructions
        if temperature is not None:
            patch["temperature"] = temperature
        if len(patch) > 1:
            await ws.send(json.dumps({"type": "session.update", "session": patch}))
            await _expect(ws, "session.updated")
        if once is not None:
            return 0 if await _turn(ws, once) else 1
        while True:
            try:
                line = await asyncio.to_thread(input, "you> ")
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if line.strip():
                await _turn(ws, line)


async def _turn(ws: websockets.ClientConnection, text: str) -> bool:
    """Send one user message, stream the reply to stdout; True when it completed."""
    await ws.send(
        json.dumps(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
            }
        )
    )
    await ws.send(json.dumps({"type": "response.create"}))
    loop = asyncio.get_running_loop()
    response_id: list[str] = []
    pending: set[asyncio.Task[None]] = set()

    def cancel() -> None:
        if response_id:
            task = loop.create_task(ws.send(json.dumps({"type": "response.cancel"})))
            pending.add(task)
            task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGINT, cancel)
    try:
        print("assistant> ", end="", flush=True)
        async for raw in ws:
            event = json.loads(raw)
            kind = event["type"]
            if kind == "response.created":
                response_id.append(event["response"]["id"])
            elif kind == "response.output_text.delta":
                print(event["delta"], end="", flush=True)
            elif kind == "error":
                print(f"\n[error {event['error']['code']}] {event['error']['message']}", file=sys.stderr)
            elif kind == "response.done":
                status = event["response"]["status"]
                print("" if status == "completed" else f"\n[{status}]")
                return bool(status == "completed")
        return False
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _expect(ws: websockets.ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await ws.recv())
        if event["type"] == kind:
            return event
        if event["type"] == "error":
            raise websockets.InvalidMessage(event["error"]["message"])
