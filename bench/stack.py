"""Start a private Redis, workers and a gateway for a benchmark, and stop them afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cli.redis_server import start_server

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BenchStack:
    port: int
    redis_url: str
    env: dict[str, str]
    logs: Path = Path()
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: dict[str, int] = field(default_factory=dict)  # kind -> processes started
    names: dict[str, int] = field(default_factory=dict)  # "gateway", "decode-0", ... -> pid
    redis_pid: int = 0

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pid(self, name: str) -> int:
        return self.names[name]

    def add_worker(self, kind: str) -> None:
        """Start one more worker of a kind; `wait_ready` waits for its model."""
        name = f"{kind}-{self.workers.get(kind, 0)}"
        self.procs.append(_spawn(["worker", kind, "--name", name], self.env, self.logs / f"{name}.log"))
        self.names[name] = self.procs[-1].pid
        self.workers[kind] = self.workers.get(kind, 0) + 1

    def wait_ready(self) -> None:
        _wait_ready(self.port, self.logs, self.workers)


@contextlib.contextmanager
def bench_stack(workers: dict[str, int], **settings: str) -> Iterator[BenchStack]:
    """`workers` maps a kind to how many processes of it to start."""
    redis_port, port = free_port(), free_port()
    redis_proc = start_server(redis_port)
    url = f"redis://127.0.0.1:{redis_port}/0"
    logs = Path(tempfile.mkdtemp(prefix="mmstream-bench-"))
    env = {**os.environ, "MMSTREAM_REDIS_URL": url, "MMSTREAM_PORT": str(port), "MMSTREAM_LOG_LEVEL": "WARNING"}
    env.update({f"MMSTREAM_{k.upper()}": v for k, v in settings.items()})
    stack = BenchStack(port, url, env, logs, redis_pid=redis_proc.pid)
    procs = stack.procs
    try:
        for kind, count in workers.items():
            for _ in range(count):
                stack.add_worker(kind)
        procs.append(_spawn(["gateway"], env, logs / "gateway.log"))
        stack.names["gateway"] = procs[-1].pid
        stack.wait_ready()
        yield stack
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                print(f"{proc.args} did not stop in 30 s; killing it (logs in {logs})")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        redis_proc.terminate()
        redis_proc.wait(10)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )


def _wait_ready(port: int, logs: Path, counts: dict[str, int], timeout: float = 180) -> None:
    """Until the workers of each kind started here have their models loaded (`/readyz` lists them even
    while it answers 503 for the kinds a benchmark leaves out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:  # noqa: S310
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        except OSError:
            body = {}
        workers = body.get("workers", {})
        loaded = {kind: sum(1 for w in workers.get(kind, []) if w.get("loaded")) for kind in counts}
        if workers and all(loaded[kind] >= count for kind, count in counts.items()):
            return
        time.sleep(0.5)
    raise TimeoutError("stack not ready; logs in " + str(logs))
