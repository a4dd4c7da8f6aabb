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
from dataclasses import dataclass
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

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/realtime"


@contextlib.contextmanager
def bench_stack(workers: dict[str, int], **settings: str) -> Iterator[BenchStack]:
    """`workers` maps a kind to how many processes of it to start."""
    redis_port, port = free_port(), free_port()
    redis_proc = start_server(redis_port)
    url = f"redis://127.0.0.1:{redis_port}/0"
    logs = Path(tempfile.mkdtemp(prefix="mmstream-bench-"))
    env = {**os.environ, "MMSTREAM_REDIS_URL": url, "MMSTREAM_PORT": str(port), "MMSTREAM_LOG_LEVEL": "WARNING"}
    env.update({f"MMSTREAM_{k.upper()}": v for k, v in settings.items()})
    procs = []
    try:
        for kind, count in workers.items():
            for i in range(count):
                procs.append(_spawn(["worker", kind, "--name", f"{kind}-{i}"], env, logs / f"{kind}-{i}.log"))
        procs.append(_spawn(["gateway"], env, logs / "gateway.log"))
        _wait_ready(port, logs, list(workers))
        yield BenchStack(port, url, env)
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


def _wait_ready(port: int, logs: Path, kinds: list[str], timeout: float = 180) -> None:
    """Until a worker of each kind started here has its model loaded (`/readyz` lists them even while
    it answers 503 for the kinds a benchmark leaves out)."""
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
        if workers and all(any(w.get("loaded") for w in workers.get(kind, [])) for kind in kinds):
            return
        time.sleep(0.5)
    raise TimeoutError("stack not ready; logs in " + str(logs))
