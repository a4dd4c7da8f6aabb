"""Real processes for tests: a private Redis, worker processes, a gateway on a free port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from cli.redis_server import start_server

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def emptied(redis_url: str) -> str:
    """The URL of a Redis database after emptying it, so nothing an earlier test left is taken up."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()
    return redis_url


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Stack:
    """Worker processes and (optionally) a gateway against one Redis database."""

    redis_url: str
    log_dir: Path
    env: dict[str, str]
    port: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def start_worker(self, kind: str, name: str) -> subprocess.Popen[bytes]:
        return self.start(name, "worker", kind, "--name", name)

    def start_gateway(self) -> None:
        self.port = free_port()
        self.env["MMSTREAM_PORT"] = str(self.port)
        self.start("gateway", "gateway")
        wait_for(lambda: http_status(f"{self.http}/healthz") == 200, 30, "the gateway")

    def wait_ready(self, kind: str = "decode", count: int = 1, timeout: float = 90) -> None:
        client = self.redis()

        def loaded() -> bool:
            keys = client.keys(f"{self.env['MMSTREAM_KEY_PREFIX']}:worker:{kind}:*")
            values = [json.loads(v) for v in client.mget(keys) if v] if keys else []
            return sum(1 for v in values if v.get("loaded")) >= count

        try:
            wait_for(loaded, timeout, f"{count} {kind} worker(s) with a loaded model")
        except TimeoutError:
            raise TimeoutError(self.logs()) from None

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("*.log")))

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def close(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def make_stack(redis_url: str, log_dir: Path, **settings: str) -> Stack:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "MMSTREAM_REDIS_URL": redis_url,
        "MMSTREAM_KEY_PREFIX": "mmtest",
        "MMSTREAM_DECODER_N_CTX": "2048",
        "MMSTREAM_MAX_AUDIO_BUFFER_S": "30",
        "MMSTREAM_LOG_LEVEL": "INFO",
    }
    env.update({f"MMSTREAM_{k.upper()}": v for k, v in settings.items()})
    log_dir.mkdir(parents=True, exist_ok=True)
    return Stack(redis_url=redis_url, log_dir=log_dir, env=env)


@contextlib.contextmanager
def running_stack(
    redis_url: str,
    log_dir: Path,
    *,
    decoders: int = 1,
    audio: int = 1,
    image: int = 1,
    speech: int = 0,
    gateway: bool = True,
    **settings: str,
) -> Iterator[Stack]:
    stack = make_stack(redis_url, log_dir, **settings)
    try:
        for i in range(decoders):
            stack.start_worker("decode", f"decode-{i}")
        for i in range(audio):
            stack.start_worker("audio", f"audio-{i}")
        for i in range(image):
            stack.start_worker("image", f"image-{i}")
        for i in range(speech):
            stack.start_worker("speech", f"speech-{i}")
        if gateway:
            stack.start_gateway()
        stack.wait_ready("decode", decoders)
        stack.wait_ready("audio", audio)
        stack.wait_ready("image", image)
        stack.wait_ready("speech", speech)
        yield stack
    finally:
        stack.close()


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 - local test URL
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def user_message(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


class Realtime:
    """A plain websocket client for /v1/realtime that collects events by type."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any] | str) -> None:
        await self.ws.send(event if isinstance(event, str) else json.dumps(event))

    async def next(self, timeout: float = 60) -> dict[str, Any]:
        import asyncio

        event: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.events.append(event)
        return event

    async def until(self, kind: str, timeout: float = 120) -> list[dict[str, Any]]:
        """Events up to and including the first of type `kind`."""
        seen = []
        while True:
            event = await self.next(timeout)
            seen.append(event)
            if event["type"] == kind:
                return seen

    async def ask(self, text: str, **response: Any) -> tuple[str, dict[str, Any]]:
        """Add a user message, create a response, return its text and the response.done event."""
        await self.send(user_message(text))
        return await self.ask_response(**response)

    async def ask_response(self, **response: Any) -> tuple[str, dict[str, Any]]:
        """Create a response to the conversation so far; its text and the response.done event."""
        await self.send({"type": "response.create", "response": response} if response else {"type": "response.create"})
        events = await self.until("response.done")
        text_out = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        return text_out, events[-1]


@contextlib.asynccontextmanager
async def realtime(url: str, temperature: float | None = 0.0) -> Any:
    import websockets

    async with websockets.connect(url, max_size=None) as ws:
        client = Realtime(ws)
        created = await client.next()
        assert created["type"] == "session.created", created
        if temperature is not None:
            await client.send({"type": "session.update", "session": {"type": "realtime", "temperature": temperature}})
            await client.until("session.updated")
        yield client


async def stream_audio(rt: Realtime, pcm: bytes, *, rate: int = 24000, pace: float = 1.0) -> None:
    """Append `pcm` in 100 ms chunks; pace 1.0 is real time, 0 sends as fast as possible."""
    import asyncio
    import base64

    step = 2 * rate // 10
    for i in range(0, len(pcm), step):
        await rt.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm[i : i + step]).decode()})
        if pace:
            await asyncio.sleep(0.1 * pace)


class OwnRedis:
    """A private redis-server with an append-only file, to stop and start again in the middle of a test."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._data = data
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = start_server(self.port, data_dir=self._data)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)
            self._proc = None
